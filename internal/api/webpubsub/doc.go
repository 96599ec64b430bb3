// Package webpubsub serves the Azure Web PubSub REST data plane (api-version 2024-12-01) under /api/, turning each call into core operations.
package webpubsub
