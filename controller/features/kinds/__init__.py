"""One module per feature kind (modules starting with ``_`` hold parts several kinds share).

Every module here is imported by ``controller.features.registry``; a kind registers itself
with ``@register``. See ``controller.features.kind.FeatureKind`` for what a kind provides.
"""
