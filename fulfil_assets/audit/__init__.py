"""The system audit: what stands between a brand and going live, computed from what its systems hold."""
