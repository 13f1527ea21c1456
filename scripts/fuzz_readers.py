"""Fuzz campaign of the FCS reader: mutated real files through itme.io.read_fcs (issue 11).

Every FCS file of ../shared/data and of fcsparser's test set (and, with --cytonormpy,
cytonormpy's CyTOF files) is mutated by the seeded mutator of tests/fuzz/fcs_mutator.py:
truncation, byte flips in HEADER/TEXT/DATA, inserted and deleted bytes, edited size and offset
keywords (huge, negative, non-numeric $PAR, $TOT, $PnB, $PnR, offsets), odd delimiters,
duplicated keywords, $BYTEORD and $DATATYPE variants, DATA overlapping TEXT, spliced files...
Each case is read in one of a few long-lived forked workers with an address-space cap
(RLIMIT_AS) and a per-case time limit. Prints the outcome table, the outcomes per mutation,
what happened to the values of every file that was read, and any case that breaks the
contract. The in-suite version is tests/fuzz/test_fuzz_fcs.py (2,500 cases).

    python scripts/fuzz_readers.py [--cases 5000] [--seed 1] [--workers 2] [--timeout 20] [--mem-gb 4]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the mutator lives with the tests (not shipped)


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return None if spec is None or spec.origin is None else Path(spec.origin).parent


def main() -> int:
    from fuzz import harness
    from fuzz.fcs_mutator import load_source

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cases", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per case")
    ap.add_argument("--mem-gb", type=float, default=4.0, help="RLIMIT_AS of each worker")
    ap.add_argument(
        "--shared-data",
        type=Path,
        default=Path(os.environ.get("ITME_SHARED_DATA", ROOT.parent / "shared" / "data")),
    )
    ap.add_argument("--cytonormpy", action="store_true", help="add cytonormpy's CyTOF files")
    args = ap.parse_args()

    fcsparser = _package_dir("fcsparser")
    sources = harness.real_sources(
        args.shared_data if args.shared_data.is_dir() else None,
        fcsparser / "tests" / "data" / "FlowCytometers" if fcsparser else None,
    )
    if args.cytonormpy and (cn := _package_dir("cytonormpy")) is not None:
        sources += [
            load_source(p, "cytonormpy/" + p.name)
            for p in sorted((cn / "_resources").glob("*.fcs"))
        ]
    unreadable = [s.name for s in sources if s.reference is None]
    print(
        f"{len(sources)} real FCS files ({len(unreadable)} refused as they are: "
        f"{', '.join(unreadable)}); seed {args.seed}, {args.cases:,} cases"
    )

    def progress(done: int, total: int) -> None:
        if done % 500 == 0 or done == total:
            print(f"  {done:,}/{total:,}", file=sys.stderr, flush=True)

    campaign = harness.run_campaign(
        sources,
        seed=args.seed,
        n_cases=args.cases,
        workers=args.workers,
        timeout=args.timeout,
        mem_limit=int(args.mem_gb * (1 << 30)),
        progress=progress,
    )
    print("\nOutcomes\n" + campaign.table())
    print("\nOutcomes per mutation\n" + campaign.by_kind())

    reads = [
        r for r in campaign.results if r["outcome"].startswith("read") and r["same"] is not None
    ]
    fates: Counter = Counter()
    for r in reads:
        if r["same"]:
            fates["values identical to the original's"] += 1
        elif r["warned"]:
            fates["values differ, ItmeInputWarning raised"] += 1
        elif r["expect"] == "free":
            fates[f"values differ without warning: {r['kind']} (undetectable)"] += 1
        else:
            fates["values differ SILENTLY (contract broken)"] += 1
    print(f"\nWhat happened to the values of the {len(reads):,} reads of files with a reference")
    for name, n in sorted(fates.items(), key=lambda kv: -kv[1]):
        print(f"  {n:>6,}  {name}")
    for kind in ("truncate", "delete_byte"):
        cut = [r for r in campaign.results if r["kind"] == kind]
        ok = [r for r in cut if r["outcome"].startswith("read")]
        print(
            f"  {kind}: {len(cut):,} cases, {len(cut) - len(ok):,} refused, {len(ok):,} read "
            f"({sum(bool(r['same']) for r in ok):,} identical, "
            f"{sum(r['same'] is False and r['warned'] for r in ok):,} changed with a warning, "
            f"{sum(r['same'] is False and not r['warned'] and r['expect'] == 'free' for r in ok):,} "
            "changed without one by a byte removed inside DATA (undetectable), "
            f"{sum(r['same'] is False and not r['warned'] and r['expect'] != 'free' for r in ok):,} "
            "changed silently)"
        )
    problems = campaign.problems()
    print(f"\nContract violations: {len(problems)}")
    for r in problems[:50]:
        print("  " + harness.describe(r))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
