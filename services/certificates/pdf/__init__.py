"""Certificate PDFs: a template and one certificate's facts in, deterministic PDF bytes out.

- ``spec.py``: what a render takes (TemplateSpec, CertificateData), the built-in template, how values are spelled;
- ``render.py``: the renderer (one per process), built from ``layout.py`` (the page), ``text.py`` (fonts, fitting,
  bidi), ``qr.py`` (the QR code as one path) and ``assets.py`` (logo and background validation and embedding);
- ``pool.py``: the worker processes that run the renderer off the event loop.

The modules import each other downwards only (pool -> render -> layout -> text/qr/assets/spec); see
docs/certificates-pdf.md.
"""
