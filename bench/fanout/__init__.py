"""The parts of bench/event_latency.py: client and publisher processes, the phases that measure, the report."""

P99_BUDGET_MS = 100.0
