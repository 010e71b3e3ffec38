"""Getting feeds and pages: HTTP fetching, the egress guard, feed parsing, OPML,
discovery, poll cadence and feed health."""
