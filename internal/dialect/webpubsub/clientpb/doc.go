// Package clientpb holds the protobuf messages of the Web PubSub protobuf
// subprotocols: webpubsub.client.proto and the Go code protoc-gen-go
// generates from it (`make proto`; TestGeneratedIsCurrent checks that the
// checked-in code is what the .proto gives).
package clientpb
