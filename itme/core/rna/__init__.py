"""Array numerics of RNA-seq: vectorised negative-binomial GLMs, count filters, gene-set scores."""
