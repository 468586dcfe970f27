"""The capture core, used by every entry point (the decorator, routed functions, providers).

``scope`` decides which instance, dataset and metadata a capture gets;
``record`` builds the records; ``call`` is one SDK call's lifecycle;
``decorator``, ``routed`` and ``generators`` capture plain functions;
``streams`` finishes a stream's record exactly once; ``snapshot`` copies
inputs at call time; ``frames`` keeps the wrappers' frames out of the SDK's
warning locations.  Everything here is private.
"""
