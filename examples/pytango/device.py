"""A PyTango-style device server start-up: traces and logs over OTLP/gRPC, as PyTango exports
them with TANGO_TELEMETRY_TRACES_EXPORTER=grpc and TANGO_TELEMETRY_LOGS_EXPORTER=grpc. It takes
its endpoint from OTEL_EXPORTER_OTLP_ENDPOINT, as the gRPC exporters do (host and port; the path
is ignored)."""
import logging
import os
import sys

from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

device = sys.argv[1] if len(sys.argv) > 1 else "sys/tg_test/1"
resource = Resource.create({"service.name": "tango-device", "tango.device": device})
traces = TracerProvider(resource=resource)
traces.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
logs = LoggerProvider(resource=resource)
logs.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter()))
log = logging.getLogger("tango")
log.addHandler(LoggingHandler(logger_provider=logs))
log.setLevel(logging.INFO)

with traces.get_tracer("tango").start_as_current_span(f"init {device}"):
    log.info(f"device {device} initialised")
traces.shutdown()
logs.shutdown()
