"""Hypothesis strategies, by subject: `records` (field values of input records, JSON values),
`limits` (settings and the core's limits), `plans` (symbolic input plans and how they become
records), `byte_edits` (edits of encoded bytes, for the decoders)."""
