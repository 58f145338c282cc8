"""The viewer and annotator: a local web app over a collection (`comicid serve`)."""
