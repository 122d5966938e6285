"""
``hbchat-bench``: load an hbchat server you run yourself, over loopback, and measure it.

Scenarios: ``idle`` (heartbeating connections, PONG round trips), ``fanout`` (senders and
receivers, delivery latency and loss) and ``storm`` (a server restart and the reconnection
timeline).  Modules:

- :mod:`hbchat.bench.stats`: histograms, percentiles, message stamps, progress text (pure)
- :mod:`hbchat.bench.settings`: endpoints, the loopback rule, argument checks (pure)
- :mod:`hbchat.bench.conn`: one raw load connection (a small line protocol, not the full client)
- :mod:`hbchat.bench.worker`: a worker process: its own reactor and its share of connections
- :mod:`hbchat.bench.runner`: the parent: workers, phases, progress, aggregation
- :mod:`hbchat.bench.report`: the summary line, the JSON and the plots
- :mod:`hbchat.bench.storm`: the reconnect storm (also behind ``benchmarks/storm.py``)
- :mod:`hbchat.bench.cli`: the command line
"""
