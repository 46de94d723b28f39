import time
import statistics
from tests.integration.test_error_stream import TimedClient, error_doc, start_stream, store_and_forward, stream_settings, ws_url, _quantiles, wait_until, hub_stats

def test_stream_only(namespace, processes):
    settings = stream_settings(namespace)
    start_stream(processes, settings)
    client = TimedClient(ws_url(settings))
    sent = {}
    for i in range(200):
        d = error_doc(f"{settings.index_prefix}x{i}")
        sent[d["event_id"]] = time.time()
        store_and_forward(settings, None, [d])
        time.sleep(0.05)
    client.wait_for_ids(set(sent))
    lat = [(client.received_at[e] - sent[e]) * 1000 for e in sent]
    print("\nerror topic -> client (1 client):", _quantiles(lat))
