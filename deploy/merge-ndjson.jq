# Merge the NDJSON (rawprobe/2) of the N shards of one rawprobe scan or sweep
# (rawprobe scan|sweep --seed S --shard I/N --ndjson):
#
#   jq -R -n -c -f deploy/merge-ndjson.jq shard-*.ndjson > merged.ndjson
#
# A scan's host has ports in every shard: its host events (one per shard that had
# ports of it) become one, as an unsharded run prints it: up when any part is up,
# counts summed, ports merged in order. A sweep's host is in one shard only and passes
# as it is. Then each shard's summary event follows, unchanged (each names its
# "shard"). Lines that are not JSON (a job runner's own) are skipped.

def sum_counts(a; b):
  reduce (b | to_entries[]) as $e (a; .[$e.key] += $e.value) | to_entries | sort_by(.key) | from_entries;

def merge_host(a; b):
  a + {
    state: (if a.state == "up" or b.state == "up" then "up" else "down" end),
    min_rtt_ms: ([a.min_rtt_ms, b.min_rtt_ms] | map(select(. != null)) | min),
    closed: (a.closed + b.closed),
    state_counts: sum_counts(a.state_counts; b.state_counts),
    reason_counts: (a.reason_counts + b.reason_counts
      | group_by([.protocol, .state, .reason])
      | map(.[0] + {count: (map(.count) | add)})),
    ports: (a.ports + b.ports | sort_by([.protocol, .port]))
  };

reduce (inputs | fromjson? | objects) as $event ({hosts: {}, summaries: []};
  if $event.event == "host" then
    .hosts[$event.address] |= (if . == null then $event else merge_host(.; $event) end)
  else
    .summaries += [$event]
  end)
| (.hosts[], .summaries[])
