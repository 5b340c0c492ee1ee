// The protocol is a header; this file gives SwiftPM a source to build.
