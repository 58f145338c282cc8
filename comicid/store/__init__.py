"""The collection on disk: instances, crop cache, embeddings, cluster assignments."""
