"""The store contract suite: one set of tests over the memory and Redis stores."""
