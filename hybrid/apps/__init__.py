"""Apps: a knowledge base, an adapter and a persona behind one `model` name.

`spec` (the YAML), `prompt` (numbered passages), `grounding` (citations, ungrounded figures),
`pipeline` (one app's request flow), `composer` (apps in the gateway), `app` (Python API),
`generators` (in-process or remote text generation), `loading` (apps for `hybrid serve`).
"""
