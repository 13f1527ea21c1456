#!/usr/bin/env bash
# A single-node SLURM on this machine (munge + slurmctld + slurmd, one localhost node), then
# the cell-level stages of a small synthetic cohort on Dask workers submitted as SLURM jobs
# through dask-jobqueue (compute.scheduler: slurm). Needs root (apt-get, munged).
#
#   sudo scripts/slurm_local.sh [python]      # python: the environment itme is installed in
#
# Everything SLURM writes (config, state, spool, logs, pid files) is under a temporary folder;
# the daemons are stopped by the pids in their pid files at the end, whatever happens.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
PY="${1:-$HERE/.venv/bin/python}"
T0=$(date +%s)

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
"$PY" -c "import dask_jobqueue" 2>/dev/null || "$PY" -m pip install -q -c "$HERE/requirements/constraints.txt" dask-jobqueue

WORK="$(mktemp -d /tmp/itme_slurm.XXXXXX)"
mkdir -p "$WORK"/{state,spool,log}
cleanup() {
    for pidfile in "$WORK/slurmd.pid" "$WORK/slurmctld.pid" "$WORK/munged.pid"; do
        if [ -s "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
    done
}
trap cleanup EXIT

# munge: a random key readable by munge only; munged refuses to start as root without --force
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
mkdir -p /run/munge && chown munge:munge /run/munge
munged --force --pid-file="$WORK/munged.pid" 2>/dev/null || munged --force
sleep 1
munge -n | unmunge | grep -q "STATUS: *Success" || { echo "munge does not work" >&2; exit 1; }

HOST="$(hostname -s)"
CPUS="$(nproc)"
MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
export SLURM_CONF="$WORK/slurm.conf"
cat > "$SLURM_CONF" <<EOF
ClusterName=itme
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld
slurmd
for _ in $(seq 1 30); do
    sinfo -h -o "%T" 2>/dev/null | grep -q idle && break
    sleep 1
done
sinfo
echo "SLURM up in $(( $(date +%s) - T0 )) s"

# the cell-level stages on two workers submitted as SLURM jobs (loopback only)
PYTHONPATH="$HERE" "$PY" - "$WORK" "$PY" <<'EOF'
import sys, time, warnings
warnings.simplefilter("ignore")
from pathlib import Path
import numpy as np
import itme
from itme._dask import ComputeSettings, start_compute
from itme.datasets import simulate_cohort

work, python = Path(sys.argv[1]), sys.argv[2]
paths = simulate_cohort(work / "cohort", n_patients=9, cells_per_sample=20_000, n_genes=4400, rng=1)
def chain(cells):
    itme.pp.arcsinh(cells)
    itme.pp.clean(cells)
    kept = itme.pp.apply_qc(cells)
    itme.tl.flowsom(kept, grid=(8, 8), n_metaclusters=12, rng=1)
    return itme.tl.cluster_phenotypes(kept, groupby="metacluster")
reference = chain(itme.io.read_cohort(paths["samples"], paths["panel"]))
settings = ComputeSettings(
    scheduler="slurm", workers=2, threads_per_worker=1, memory_per_worker="2GB", chunk_rows=50_000,
    jobqueue={"queue": "debug", "interface": "lo", "python": python,
              "log_directory": str(work / "log"), "job_extra_directives": [f"--chdir={work}"]},
)
t0 = time.perf_counter()
with start_compute(settings, n_channels=47) as client:
    client.wait_for_workers(2, timeout=120)
    print(f"2 SLURM workers up in {time.perf_counter() - t0:.1f} s", flush=True)
    lazy = chain(itme.io.read_cohort(paths["samples"], paths["panel"], store=work / "c.zarr"))
print("tables equal to the in-memory run:", reference.equals(lazy))
print(f"done in {time.perf_counter() - t0:.1f} s")

# the same cohort through `itme run` (ingest -> clean -> batch -> cluster -> annotate ->
# abundance): in memory, then with compute.scheduler: slurm (the store on SLURM workers)
import subprocess
import yaml
def config(name, compute):
    cfg = {
        "seed": 1, "output": str(work / name),
        "inputs": {k: str(paths[k]) for k in ("samples", "panel", "clinical")}
        | {"phenotypes": "lymphoid_visram2021"},
        "cluster": {"grid": [8, 8], "n_metaclusters": 12},
        "embed": {"enabled": False}, "batch": {"drift": False, "method": "none"},
        "compute": compute,
    }
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
itme_cli = [python, "-c", "import sys; from itme.cli import main; sys.exit(main())", "-q", "run",
            "--until", "abundance"]
subprocess.run([*itme_cli, str(config("run_memory", {"backend": "memory"}))], check=True)
compute = {"backend": "store", "scheduler": "slurm", "workers": 2, "memory_per_worker": "2GB",
           "chunk_rows": 50_000, "jobqueue": settings.jobqueue}
t0 = time.perf_counter()
subprocess.run([*itme_cli, str(config("run_slurm", compute))], check=True)
print(f"itme run with compute.scheduler: slurm took {time.perf_counter() - t0:.1f} s")
EOF
"$PY" "$HERE/scripts/compare_runs.py" "$WORK/run_memory" "$WORK/run_slurm" \
    && echo "itme run on SLURM: every table identical to the in-memory run"
