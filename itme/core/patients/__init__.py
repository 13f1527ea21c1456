"""Array numerics of patient clustering: column transforms, Ward, agreement between clusterings."""
