"""The benchmark suite, ``make bench`` (``python -m bench``): numbers and ratios, never asserts.

One run measures everything side by side and writes ``docs/performance.md``:

- :mod:`bench.upstream`: Spotify calls and token refreshes per simulated minute, for 1 to 1000
  viewers, the live engine against a widget that refreshes and polls on every request (in-process,
  on a fake clock);
- :mod:`bench.latency`: how long a track change takes to reach an SSE viewer (a real server);
- :mod:`bench.throughput`: requests per second of the engine's endpoints against nginx serving
  the same bytes, with ``wrk`` in its own process;
- :mod:`bench.memory`: the server's resident memory with 1000 SSE viewers open.

:mod:`bench.servers` starts and stops the server processes and signs in over HTTP. Everything
talks to 127.0.0.1 only, every wait is bounded, and every process started is stopped.
"""
