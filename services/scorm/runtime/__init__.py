"""The learner runtime's pure parts: the CMI data model (``cmi``, ``cmi_12``, ``cmi_2004``), the commit body
reader (``body``) and the runtime tokens (``tokens``)."""
