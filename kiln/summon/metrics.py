"""The summoner's Prometheus metrics (prometheus-client), served at http://HOST:PORT/metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.summons = Counter(
            "kiln_summons",
            "Instances summoned, by service and how (restore or cold)",
            ["service", "how"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kiln_summon_seconds",
            "From the first held connection to the instance accepting it",
            ["service"],
            buckets=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.running = Gauge("kiln_instances_running", "Summoned instances running now", registry=self.registry)
        self.held = Gauge(
            "kiln_held_connections", "Connections held while their instance is summoned", registry=self.registry
        )
        self.failures = Counter(
            "kiln_summon_failures",
            "Summons that failed, by service and reason",
            ["service", "reason"],
            registry=self.registry,
        )
        self.stops = Counter(
            "kiln_instance_stops",
            "Instances stopped, by service and reason (idle, lru, exited)",
            ["service", "reason"],
            registry=self.registry,
        )

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
