// How etcd 3.4's JSON gateway reads a request body, ported from Go: grpc-gateway v1's JSONPb
// decoder is Go's encoding/json Decoder (one JSON value, its scanner's syntax errors) handing the
// value to golang/protobuf v1.3's jsonpb with AllowUnknownFields, which reads each field with
// encoding/json again. The texts of their errors are the ones etcd answers with
// ("json: cannot unmarshal number into Go value of type string", "illegal base64 data at input
// byte 4", "unexpected EOF", ...), and what they let by is let by here too (unknown fields,
// integers as strings, bytes as arrays of numbers, base64 with line feeds, ...).
#ifndef NET_ETCD_GO_JSON_H_
#define NET_ETCD_GO_JSON_H_

#include <string>

#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace kvstore::net::etcd {

// The first syntax error of Go's encoding/json scanner in `text` (one JSON value), in its words
// ("invalid character 'b' looking for beginning of object key string"); "" when there is none
// before the value ends or the text runs out.
std::string GoSyntaxError(absl::string_view text);

enum class GoJsonResult {
  kOk,
  kRefused,  // `error`: Go's text
  // Read, but with null for an element of a repeated message: jsonpb leaves a nil pointer in
  // the slice, and etcd's gateway panics marshaling the request (Go's net/http drops the
  // connection without an answer).
  kPanics,
};

// A unary call's body as grpc-gateway decodes it into `message` (which starts empty): an empty
// or white-space body is an empty request, and whatever follows the first value is not read.
GoJsonResult GoDecodeRequest(absl::string_view body, google::protobuf::Message* message,
                             std::string* error);

// One complete JSON value (as the Decoder found it) read by jsonpb into `message`: refused with
// Go's text when it does not map (a value that is not an object or null, a field of the wrong
// type, a bad base64 string, an integer out of range, an unknown enum name).
GoJsonResult GoUnmarshalJsonpb(absl::string_view value, google::protobuf::Message* message,
                               std::string* error);

}  // namespace kvstore::net::etcd

#endif  // NET_ETCD_GO_JSON_H_
