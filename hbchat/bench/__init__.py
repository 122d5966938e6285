"""
``hbchat-bench``: load an hbchat server you run yourself, over loopback, and measure it.

Scenarios: ``idle`` (heartbeating connections, PONG round trips), ``fanout`` (senders and
receivers, delivery latency and loss) and ``storm`` (a server restart and the reconnection
timeline).  Modules:

- :mod:`hbchat.bench.stats`: histograms, percentiles, message stamps, progress text (pure)
- :mod:`hbchat.bench.settings`: endpoints, the loopback rule, argument checks (pure)
- :mod:`hbchat.bench.conn`: one raw load connection (a small line protocol, not the full client)
- :mod:`hbchat.bench.plan`: each worker's share of the connections (pure)
- :mod:`hbchat.bench.worker`: a worker process: its own reactor and its share of connections
- :mod:`hbchat.bench.runner`: the parent: workers and phases
- :mod:`hbchat.bench.progress`: the parent's progress bar or status lines
- :mod:`hbchat.bench.totals`: the workers' numbers added up into the results (pure)
- :mod:`hbchat.bench.resources`: fd limit, CPU time, the server's /proc
- :mod:`hbchat.bench.report`: the summary line, the JSON and the plots
- :mod:`hbchat.bench.storm`: the reconnect storm: its clients and one scenario's run
- :mod:`hbchat.bench.stormclock`, :mod:`~hbchat.bench.stormrecord`: the storm's clock and log, what a
  scenario records
- :mod:`hbchat.bench.stormresults`: scenarios, settings, results and their JSON (pure)
- :mod:`hbchat.bench.stormserver`: the storm's ``twistd hbchat`` processes, by PID
- :mod:`hbchat.bench.stormreport`, :mod:`~hbchat.bench.stormplot`: the results in words (pure), the plot
- :mod:`hbchat.bench.stormdocs`: the docs writer (``benchmarks/storm.py --docs`` only)
- :mod:`hbchat.bench.stormoptions`, :mod:`~hbchat.bench.stormrun`: the storm's options (pure), its
  two front ends (``benchmarks/storm.py``, ``hbchat-bench storm``)
- :mod:`hbchat.bench.cli`: the command line
"""
