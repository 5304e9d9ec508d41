"""The instance: items, bundles, segments, responses and policy as immutable typed tables; the
constraint families; the seeded generator."""
