"""The reference in one place: what a correct submission does (`expectations`), observing the
reference and configuring workers with it (`observing`), the selfcheck fixtures file
(`fixtures`), the cache of earlier observations (`cache`) and the reference's check against
itself (`check`)."""
