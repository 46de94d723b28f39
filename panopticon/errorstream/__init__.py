"""The live error stream, a side branch of the pipeline.

    apm.logs.error --relay (own process)--> Redis pub/sub --hub (one per `ws` process)--> WebSocket clients
                                                               ^ gap fill / catch-up from logs-apm

`protocol` holds the pure parts (cursor, envelope, filters, frames), `relay` the Kafka -> Redis process,
`hub` the fan-out, `gapfill` the reads from `logs-apm`; the WebSocket route is `panopticon.api.ws`.
"""
