#ifndef KVSTORE_NET_ETCD_GATEWAY_H_
#define KVSTORE_NET_ETCD_GATEWAY_H_

// etcd's JSON gateway: the /v3/* endpoints as etcd 3.4's grpc-gateway maps the v3 API, served on
// the client URL beside gRPC and Cap'n Proto (net/client_port.h). A POST with a request message
// as JSON in the body answers with the response message as JSON: protobuf's JSON mapping with
// the .proto field names, bytes in base64, 64-bit integers as strings, fields at their default
// left out. /v3beta/* is the same API under the older prefix, which etcd 3.4 still serves.
//
// Streams: /v3/watch and /v3/lease/keepalive read their body as etcd's grpc-gateway reads a
// bidi stream's (Go's json.Decoder): JSON values one after another, white space between them
// optional, each handed on as it arrives, each answer written as {"result":{...}} on its own line
// (chunked in HTTP/1.1). A watch stream carries many watches (create, cancel and progress
// requests, numbered as the gRPC Watch stream numbers them) and stays open after the body's end,
// until the client goes away; a keep-alive stream answers each value in order and ends after the
// body. A first value that cannot be read answers 500 as etcd does; a later one ends the reading.
// /v3/maintenance/snapshot streams the snapshot's chunks.
//
// In front of all of it, as etcd 3.4.23's access controller and mux: every answer carries
// etcd's CORS headers (Access-Control-Allow-Origin "*", its methods and headers; --cors' default),
// OPTIONS is answered 200 with no body on any path (a CORS preflight), and the bare /v3 is
// redirected (301) to /v3/.
//
// Errors are etcd's (convert.h) with grpc-gateway's HTTP status and body:
// {"error":"etcdserver: ...","code":<gRPC code>,"message":"etcdserver: ..."}. Anything not under
// /v3 or /v3beta goes to `fallback` (/metrics, /health, the status page).
//
// Auth: /v3/auth/* are etcd's Auth service. A call runs as the token of its "Authorization"
// header (the whole value, as curl -H "Authorization: <token>" after /v3/auth/authenticate) or
// of "Grpc-Metadata-Token", which wins, as grpc-gateway and etcd's AuthInfoFromCtx take them;
// without either, as the connection's client certificate CN (ForCertUser), else as nobody.
//
// Everything runs on the member's loop thread: the gateway calls the MemberService directly.

#include <cstdint>
#include <string>

#include "kj/compat/http.h"
#include "net/member_service.h"

namespace kvstore::net::etcd {

// The auth token a request's headers carry ("" for none, kEmptyTokenSent for an empty one): see
// above.
std::string TokenOfHeaders(const kj::HttpHeaders& headers);

class Gateway final : public kj::HttpService {
 public:
  // `member`, `headers` and `fallback` must outlive the gateway. Bodies above
  // `max_request_bytes` (plus etcd's envelope) are refused with 413.
  Gateway(MemberService& member, const kj::HttpHeaderTable& headers, kj::HttpService& fallback,
          uint64_t max_request_bytes);

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url,
                            const kj::HttpHeaders& headers, kj::AsyncInputStream& body,
                            Response& response) override;
  // A request whose calls run as `cert_user` (the CN of the connection's verified client
  // certificate under --client-cert-auth, as etcd's AuthInfoFromTLS); "" for none.
  kj::Promise<void> Serve(kj::HttpMethod method, kj::StringPtr url, const kj::HttpHeaders& headers,
                          kj::AsyncInputStream& body, Response& response,
                          const std::string& cert_user);
  // This gateway for one connection whose calls run as `cert_user` (Serve); outlived by it.
  kj::Own<kj::HttpService> ForCertUser(std::string cert_user);

 private:
  class Impl;
  // Serve without the CORS wrapping.
  kj::Promise<void> ServeApi(kj::HttpMethod method, kj::StringPtr url,
                             const kj::HttpHeaders& headers, kj::AsyncInputStream& body,
                             Response& response, const std::string& cert_user);
  MemberService& member_;
  const kj::HttpHeaderTable& headers_;
  kj::HttpService& fallback_;
  const uint64_t max_body_bytes_;
};

}  // namespace kvstore::net::etcd

#endif  // KVSTORE_NET_ETCD_GATEWAY_H_
