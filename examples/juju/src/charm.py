#!/usr/bin/env python3
"""A charm's src/charm.py cut down to its tracing: the OpenTelemetry SDK set up the way
`ops[tracing]` sets it up, with the two lines a charm adds to run under tracespool's dispatch.

ops[tracing] (ops >= 2.20) builds a TracerProvider whose resource names the unit, opens a span
`ops.main` for the dispatch and sends its spans to the URL given to
`ops.tracing.set_destination(url, ca)`, which its `Tracing` object takes from the `tracing`
relation. Under `tracespool exec` the charm instead:

1. sends to the capture receiver exec runs for it, whose URL is in the environment:
   `ops.tracing.set_destination(url=os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"], ca=None)`
   in `__init__`, on every dispatch (the capture port is new each time);
2. opens its spans under the hook's span, by attaching the context of `TRACEPARENT` before
   `ops.main(...)` opens `ops.main`.

This stand-in needs only `opentelemetry-sdk` and `opentelemetry-exporter-otlp-proto-http`.
"""

import os

from opentelemetry import context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator


class DemoCharm:
    def on_event(self, tracer, event):
        with tracer.start_as_current_span(f"DemoCharm._on_{event}") as span:
            span.set_attribute("juju.event", event)


def main():
    # (2) The hook's span, which tracespool's dispatch opened, is the parent of ops.main.
    context.attach(
        TraceContextTextMapPropagator().extract(
            {"traceparent": os.environ.get("TRACEPARENT", "")}
        )
    )

    app, _, unit = os.environ.get("JUJU_UNIT_NAME", "charm/0").partition("/")
    provider = TracerProvider(
        resource=Resource.create(
            {
                "service.name": app,
                "service.instance.id": unit,
                "service.namespace.name": os.environ.get("JUJU_MODEL_NAME", ""),
                "service.charm": "DemoCharm",
            }
        )
    )
    # (1) The destination: exec's capture receiver (unset without tracespool: no export).
    url = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if url:
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    tracer = provider.get_tracer("ops")

    event = os.environ.get("JUJU_DISPATCH_PATH", "hooks/install").rpartition("/")[2]
    with tracer.start_as_current_span("ops.main"):
        DemoCharm().on_event(tracer, event.replace("-", "_"))
    provider.shutdown()


if __name__ == "__main__":
    main()
