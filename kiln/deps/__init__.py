"""An app's third-party dependencies: what it declares (`declared`), installing
them for the embedded interpreter into a cache (`install`), and what the
installed distributions say about themselves (`metadata`)."""
