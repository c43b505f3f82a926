{#- The nightly backup as a Salt state: its command runs under `tracespool exec`, in a span.
    Under `salt-call` traced by tracespool, the command inherits TRACEPARENT from salt-call's own
    environment. salt-ssh carries no environment to the target, so there it comes in the pillar
    (`salt-ssh-traced` puts it there) and `env:` sets it for the command; `tracing:endpoint`
    becomes OTEL_EXPORTER_OTLP_ENDPOINT (the collector, for a target that has no config). The pillar's
    `tracing:sampler` and `tracing:sampler_arg` become OTEL_TRACES_SAMPLER and
    OTEL_TRACES_SAMPLER_ARG, which tracespool reads. #}
{%- set tracing = salt['pillar.get']('tracing', {}) %}
{%- set env = {} %}
{%- if tracing.get('traceparent') %}
{%-   set _ = env.update({'TRACEPARENT': tracing['traceparent']}) %}
{%- endif %}
{%- if tracing.get('endpoint') %}
{%-   set _ = env.update({'OTEL_EXPORTER_OTLP_ENDPOINT': tracing['endpoint']}) %}
{%- endif %}
{%- if tracing.get('sampler') %}
{%-   set _ = env.update({'OTEL_TRACES_SAMPLER': tracing['sampler']}) %}
{%- endif %}
{%- if tracing.get('sampler_arg') is not none and tracing.get('sampler_arg') != '' %}
{%-   set _ = env.update({'OTEL_TRACES_SAMPLER_ARG': tracing['sampler_arg'] | string}) %}
{%- endif %}

nightly-backup:
  cmd.run:
    - name: >-
        {{ tracing.get('bin', 'tracespool') }} exec --name nightly-backup
        --attr salt.state=backup --attr salt.minion={{ grains['id'] }}
        -- {{ salt['pillar.get']('backup:command', '/usr/local/bin/backup.sh') }}
    - env: {{ env | json }}
