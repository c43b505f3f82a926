{#- Puts the static tracespool binary (the musl build, which needs nothing on the target: no
    Python, no libraries) where the states' commands find it. Put the binary in the file roots
    as tracespool/tracespool. #}
tracespool-binary:
  file.managed:
    - name: /usr/local/bin/tracespool
    - source: salt://tracespool/tracespool
    - mode: '0755'
    - user: root
    - group: root
