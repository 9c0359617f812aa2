"""``python -m benchmarks``: the send benchmark (and the send_many memory benchmark)."""

from benchmarks.run import main

main()
