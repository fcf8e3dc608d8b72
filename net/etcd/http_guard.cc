#include "net/etcd/http_guard.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace kvstore::net::etcd {
namespace {

// How long a refused connection is read, after its answer, before it is closed: a close with
// unread bytes resets the connection, and the client may lose the answer.
constexpr kj::Duration kRefusedDrainTimeout = 1 * kj::SECONDS;
// Bytes read from the socket at a time.
constexpr size_t kReadChunkBytes = 16 << 10;
// A chunk-size line or a trailer line longer than this is not chunked framing that the guard
// follows: the rest of the connection passes unchecked to kj, which refuses it.
constexpr size_t kMaxChunkLineBytes = 4096;

// RFC 7230 tchar, as Go's httpguts.IsTokenRune.
bool IsTokenByte(unsigned char c) {
  return absl::ascii_isalnum(c) || (c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
}

bool IsToken(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return IsTokenByte(c); });
}

// Go's httpguts.ValidHeaderFieldValue: no control character but tab (obs-text allowed).
bool IsValidValue(absl::string_view v) {
  return std::none_of(v.begin(), v.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return (c < ' ' && c != '\t') || c == 0x7f;
  });
}

// Go's httpguts.ValidHostHeader.
bool IsValidHost(absl::string_view host) {
  return std::all_of(host.begin(), host.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return absl::ascii_isalnum(c) ||
           (c != '\0' && std::strchr("!$%&'()*+,-.:;=[]_~", c) != nullptr);
  });
}

// Go's textproto.trim: ASCII space, tab, CR and LF off both ends.
absl::string_view Trim(absl::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// Go's textproto.CanonicalMIMEHeaderKey: a key with a byte that is not a token byte stays as it
// is (and is refused later as an invalid name).
std::string CanonicalKey(absl::string_view key) {
  if (!std::all_of(key.begin(), key.end(), [](char c) { return IsTokenByte(c); })) {
    return std::string(key);
  }
  std::string out(key);
  bool upper = true;
  for (char& c : out) {
    c = upper ? absl::ascii_toupper(c) : absl::ascii_tolower(c);
    upper = c == '-';
  }
  return out;
}

// Go's net/http.ParseHTTPVersion.
bool ParseVersion(absl::string_view proto, int* major, int* minor) {
  if (proto.size() != 8 || !absl::StartsWith(proto, "HTTP/") || proto[6] != '.' ||
      !absl::ascii_isdigit(proto[5]) || !absl::ascii_isdigit(proto[7])) {
    return false;
  }
  *major = proto[5] - '0';
  *minor = proto[7] - '0';
  return true;
}

// What Go's url.ParseRequestURI refuses, in the shapes a request line can carry: empty, a
// control character, a bad %-escape in the path, a relative reference without a scheme.
bool IsValidRequestUri(absl::string_view uri) {
  if (uri.empty()) return false;
  for (char ch : uri) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < ' ' || c == 0x7f) return false;
  }
  if (uri == "*") return true;
  if (uri.front() == '/') {
    const absl::string_view path = uri.substr(0, uri.find('?'));
    for (size_t i = 0; i < path.size(); ++i) {
      if (path[i] != '%') continue;
      if (i + 2 >= path.size() || !absl::ascii_isxdigit(path[i + 1]) ||
          !absl::ascii_isxdigit(path[i + 2])) {
        return false;
      }
    }
    return true;
  }
  // An absolute URI: a scheme (a letter, then letters, digits, '+', '-', '.') and a colon.
  if (!absl::ascii_isalpha(uri.front())) return false;
  for (char c : uri.substr(1)) {
    if (c == ':') return true;
    if (!absl::ascii_isalnum(c) && c != '+' && c != '-' && c != '.') return false;
  }
  return false;
}

constexpr char kErrorHeaders[] =
    "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n";

// Go's answer to an error that is not a net/http status error (a malformed request line, MIME
// header or length): "400 Bad Request" alone.
std::string PlainRefusal() {
  return absl::StrCat("HTTP/1.1 400 Bad Request", kErrorHeaders, "400 Bad Request");
}

// Go's answer to one of its status errors: the text on the status line and in the body.
std::string StatusRefusal(int code, absl::string_view status_text, absl::string_view text) {
  return absl::StrCat("HTTP/1.1 ", code, " ", status_text, ": ", text, kErrorHeaders, code, " ",
                      status_text, ": ", text);
}

CheckedHead Refused(std::string refusal) {
  CheckedHead head;
  head.refusal = std::move(refusal);
  return head;
}

}  // namespace

CheckedHead CheckRequestHead(absl::string_view head) {
  if (head.size() > kMaxRequestHeadBytes) {
    return Refused(absl::StrCat("HTTP/1.1 431 Request Header Fields Too Large", kErrorHeaders,
                                "431 Request Header Fields Too Large"));
  }
  // Lines without their line ends (LF, or CRLF).
  std::vector<absl::string_view> lines;
  for (size_t start = 0; start < head.size();) {
    size_t end = head.find('\n', start);
    if (end == absl::string_view::npos) end = head.size();
    absl::string_view line = head.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    start = end + 1;
  }
  if (lines.empty()) return Refused(PlainRefusal());

  // The request line: net/http's parseRequestLine, validMethod, ParseHTTPVersion,
  // url.ParseRequestURI.
  const absl::string_view request_line = lines[0];
  const size_t first_space = request_line.find(' ');
  if (first_space == absl::string_view::npos) return Refused(PlainRefusal());
  const size_t second_space = request_line.find(' ', first_space + 1);
  if (second_space == absl::string_view::npos) return Refused(PlainRefusal());
  const absl::string_view method = request_line.substr(0, first_space);
  const absl::string_view uri =
      request_line.substr(first_space + 1, second_space - first_space - 1);
  const absl::string_view proto = request_line.substr(second_space + 1);
  int major = 0, minor = 0;
  if (!IsToken(method) || !ParseVersion(proto, &major, &minor)) return Refused(PlainRefusal());
  const bool connect = method == "CONNECT";
  if (!(connect && !uri.empty() && uri.front() != '/') && !IsValidRequestUri(uri)) {
    return Refused(PlainRefusal());
  }

  // The headers: textproto's readMIMEHeader. A first line that starts with white space, or a
  // line without a colon, is malformed; a line that starts with white space continues the one
  // before it (joined with one space); an empty key is skipped.
  struct Field {
    std::string key;  // canonical, or as sent when not a token
    std::string value;
  };
  std::vector<Field> fields;
  size_t i = 1;
  if (i < lines.size() && !lines[i].empty() && (lines[i][0] == ' ' || lines[i][0] == '\t')) {
    return Refused(PlainRefusal());
  }
  while (i < lines.size() && !lines[i].empty()) {
    if (lines[i].find(':') == absl::string_view::npos) return Refused(PlainRefusal());
    std::string logical(Trim(lines[i]));
    for (++i; i < lines.size() && !lines[i].empty() && (lines[i][0] == ' ' || lines[i][0] == '\t');
         ++i) {
      absl::StrAppend(&logical, " ", Trim(lines[i]));
    }
    const size_t colon = logical.find(':');
    std::string key = CanonicalKey(absl::string_view(logical).substr(0, colon));
    if (key.empty()) continue;
    absl::string_view value = absl::string_view(logical).substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
      value.remove_prefix(1);
    }
    fields.push_back({std::move(key), std::string(value)});
  }
  auto values_of = [&fields](absl::string_view key) {
    std::vector<absl::string_view> values;
    for (const Field& f : fields) {
      if (f.key == key) values.push_back(f.value);
    }
    return values;
  };

  // The body's framing: net/http's readTransfer (fixTransferEncoding, fixLength).
  CheckedHead checked;
  const bool at_least_11 = major > 1 || (major == 1 && minor >= 1);
  bool chunked = false;
  std::vector<absl::string_view> codings = values_of("Transfer-Encoding");
  if (!codings.empty() && at_least_11) {
    if (codings.size() != 1 || !absl::EqualsIgnoreCase(Trim(codings[0]), "chunked")) {
      return Refused(absl::StrCat("HTTP/1.1 501 Not Implemented", kErrorHeaders,
                                  "Unsupported transfer encoding"));
    }
    chunked = true;
  }
  std::vector<absl::string_view> lengths = values_of("Content-Length");
  for (absl::string_view other : lengths) {
    if (Trim(other) != Trim(lengths[0])) return Refused(PlainRefusal());
  }
  std::string length_text;
  if (!chunked && !lengths.empty() && !Trim(lengths[0]).empty()) {
    length_text = std::string(Trim(lengths[0]));
    uint64_t length = 0;
    if (!std::all_of(length_text.begin(), length_text.end(),
                     [](char c) { return absl::ascii_isdigit(c); }) ||
        !absl::SimpleAtoi(length_text, &length) || length > (uint64_t{1} << 63) - 1) {
      return Refused(PlainRefusal());
    }
    checked.body = length > 0 ? CheckedHead::Body::kLength : CheckedHead::Body::kNone;
    checked.length = length;
  }
  if (chunked) checked.body = CheckedHead::Body::kChunked;

  // net/http's conn.readRequest: the version, Host, then every name and value.
  const bool h2_preface = method == "PRI" && uri == "*" && major == 2 && minor == 0;
  if (major != 1 && !h2_preface) {
    return Refused(
        StatusRefusal(505, "HTTP Version Not Supported", "unsupported protocol version"));
  }
  const std::vector<absl::string_view> hosts = values_of("Host");
  if (at_least_11 && hosts.empty() && !connect) {
    return Refused(StatusRefusal(400, "Bad Request", "missing required Host header"));
  }
  if (hosts.size() > 1) return Refused(StatusRefusal(400, "Bad Request", "too many Host headers"));
  if (hosts.size() == 1 && !IsValidHost(hosts[0])) {
    return Refused(StatusRefusal(400, "Bad Request", "malformed Host header"));
  }
  for (const Field& f : fields) {
    if (!IsToken(f.key)) return Refused(StatusRefusal(400, "Bad Request", "invalid header name"));
    if (!IsValidValue(f.value)) {
      return Refused(StatusRefusal(400, "Bad Request", "invalid header value"));
    }
  }

  // The normal form kj reads: the framing as Go decided it (a chunked body's Content-Length
  // dropped, repeated equal lengths as one, Transfer-Encoding of HTTP/1.0 ignored).
  absl::StrAppend(&checked.normal, request_line, "\r\n");
  bool length_written = false;
  for (const Field& f : fields) {
    if (f.key == "Transfer-Encoding" && !chunked) continue;
    if (f.key == "Content-Length") {
      if (!length_text.empty() && !length_written) {
        absl::StrAppend(&checked.normal, "Content-Length: ", length_text, "\r\n");
      }
      length_written = true;
      continue;
    }
    // A value ending in white space (a continuation line that was blank) reads the same without
    // it: a line's trailing white space is no part of its value to any reader, kj included.
    absl::StrAppend(&checked.normal, f.key, ": ", Trim(f.value), "\r\n");
  }
  absl::StrAppend(&checked.normal, "\r\n");
  if (connect || !values_of("Upgrade").empty()) {
    checked.body = CheckedHead::Body::kOpaque;
    return checked;
  }
  // Go's shouldClose: httpguts.HeaderValuesContainsToken over every Connection value.
  const std::vector<absl::string_view> connection = values_of("Connection");
  auto has_token = [&connection](absl::string_view token) {
    for (absl::string_view value : connection) {
      for (absl::string_view part : absl::StrSplit(value, ',')) {
        if (absl::EqualsIgnoreCase(Trim(part), token)) return true;
      }
    }
    return false;
  };
  const bool close = has_token("close");
  if (major == 1 && minor == 0) {
    checked.after = close || !has_token("keep-alive") ? CheckedHead::After::kClose10
                                                      : CheckedHead::After::kKeepAlive10;
  } else if (close) {
    checked.after = CheckedHead::After::kClose;
  }
  return checked;
}

namespace {

// A response head as kj wrote it, made Go's answer to a request whose close rule is `after`.
struct EditedHead {
  std::string text;
  // The answer's length is known only at its end (kj chunks it) and the request is HTTP/1.0,
  // which has no chunked coding: its body goes out unframed and the connection ends after it.
  bool unframed = false;
};

// `head` (its status line and fields, each with its line end, without the blank line) with Go's
// Connection header for `after` added before its blank line, unless kj wrote one itself (its own
// error answers say "Connection: close"). An HTTP/1.0 request's answer is in HTTP/1.0; when kj
// chunks it, "Transfer-Encoding: chunked" is taken out (Go's net/http sends such an answer
// unframed, ended by the connection's close).
EditedHead EditAnswerHead(absl::string_view head, CheckedHead::After after) {
  const bool http10 =
      after == CheckedHead::After::kClose10 || after == CheckedHead::After::kKeepAlive10;
  EditedHead edited;
  bool has_connection = false, has_length = false;
  for (absl::string_view line : absl::StrSplit(head, "\r\n", absl::SkipEmpty())) {
    const size_t colon = line.find(':');
    const absl::string_view name = colon == absl::string_view::npos
                                       ? absl::string_view()
                                       : absl::string_view(line).substr(0, colon);
    if (http10 && absl::EqualsIgnoreCase(name, "Transfer-Encoding") &&
        absl::EqualsIgnoreCase(Trim(line.substr(colon + 1)), "chunked")) {
      edited.unframed = true;
      continue;
    }
    has_connection = has_connection || absl::EqualsIgnoreCase(name, "Connection");
    has_length = has_length || absl::EqualsIgnoreCase(name, "Content-Length");
    if (edited.text.empty() && http10 && absl::StartsWith(line, "HTTP/1.1 ")) {
      // Go answers an HTTP/1.0 request in HTTP/1.0.
      absl::StrAppend(&edited.text, "HTTP/1.0", line.substr(8), "\r\n");
    } else {
      absl::StrAppend(&edited.text, line, "\r\n");
    }
  }
  if (!has_connection) {
    if (after == CheckedHead::After::kClose) edited.text += "Connection: close\r\n";
    // Go keeps an HTTP/1.0 connection open only for an answer of known length.
    if (after == CheckedHead::After::kKeepAlive10 && has_length) {
      edited.text += "Connection: keep-alive\r\n";
    }
  }
  edited.text += "\r\n";
  return edited;
}

// kj's chunked framing taken off an answer's body, as kj writes it ("<hex size>\r\n", the
// data, "\r\n", ... "0\r\n\r\n"), in whatever pieces it writes it.
class Unchunker {
 public:
  // The body bytes in `framed`; nothing after the last chunk.
  std::string Take(absl::string_view framed) {
    std::string data;
    while (!framed.empty() && phase_ != Phase::kDone) {
      if (phase_ == Phase::kData) {
        const size_t n = std::min<uint64_t>(remaining_, framed.size());
        data.append(framed.data(), n);
        framed.remove_prefix(n);
        remaining_ -= n;
        if (remaining_ == 0) phase_ = Phase::kDataEnd;
        continue;
      }
      // A line: a chunk's size, the line end after its data, or a trailer line.
      const size_t nl = framed.find('\n');
      line_.append(framed.data(), nl == absl::string_view::npos ? framed.size() : nl);
      if (nl == absl::string_view::npos) break;
      framed.remove_prefix(nl + 1);
      absl::string_view line = line_;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (phase_ == Phase::kSize) {
        uint64_t size = 0;
        absl::SimpleHexAtoi(std::string(line.substr(0, line.find(';'))), &size);
        phase_ = size == 0 ? Phase::kTrailer : Phase::kData;
        remaining_ = size;
      } else if (phase_ == Phase::kDataEnd) {
        phase_ = Phase::kSize;
      } else if (line.empty()) {
        phase_ = Phase::kDone;  // the end of the trailers (kj writes none)
      }
      line_.clear();
    }
    return data;
  }

 private:
  enum class Phase { kSize, kData, kDataEnd, kTrailer, kDone };
  Phase phase_ = Phase::kSize;
  uint64_t remaining_ = 0;
  std::string line_;  // a line's bytes so far
};

// One connection: what was read from the socket and not yet handed to kj, and where in the
// request stream it is.
class GuardState {
 public:
  explicit GuardState(kj::Own<kj::AsyncIoStream> inner) : inner_(kj::mv(inner)) {}

  kj::AsyncIoStream& inner() { return *inner_; }
  const std::string& refusal() const { return refusal_; }

  // kj's read: at least min_bytes unless the stream ended (or a head was refused, which kj
  // sees as the client's close at a request boundary, or a request asked for the close and its
  // message is done).
  kj::Promise<size_t> Read(kj::byte* buffer, size_t min_bytes, size_t max_bytes, size_t done) {
    while (true) {
      if (!marks_.empty() && out_offset_ == marks_.front().first && out_offset_ < out_.size()) {
        // A head whose answer the guard edits: kj gets it in a read of its own, which it makes
        // once it has answered everything before it, so the next response head answers it.
        if (done > 0) return done;
        // After an unframed answer only the connection's end tells where it ends: kj sees the
        // end of the stream instead of the request that follows.
        if (unframed_) return done;
        answering_ = marks_.front().second;
        marks_.pop_front();
        answer_head_.clear();
      }
      const size_t limit = marks_.empty() ? out_.size() : marks_.front().first;
      const size_t take = std::min(max_bytes - done, limit - out_offset_);
      std::memcpy(buffer + done, out_.data() + out_offset_, take);
      out_offset_ += take;
      done += take;
      if (out_offset_ == out_.size()) {
        out_.clear();
        out_offset_ = 0;
        for (auto& mark : marks_) mark.first = 0;  // each was at the end
      }
      if (done >= min_bytes || done == max_bytes) return done;
      if (!marks_.empty() && out_offset_ == marks_.front().first && out_offset_ < out_.size()) {
        return done;
      }
      if (!Advance()) {
        if (!refusal_.empty() || eof_ || (closing_ && phase_ == Phase::kHead)) return done;
        if (chunk_.size() == 0) chunk_ = kj::heapArray<kj::byte>(kReadChunkBytes);
        return inner_->tryRead(chunk_.begin(), 1, chunk_.size())
            .then([this, buffer, min_bytes, max_bytes, done](size_t n) {
              if (n == 0) {
                eof_ = true;
              } else {
                in_.append(reinterpret_cast<const char*>(chunk_.begin()), n);
              }
              return Read(buffer, min_bytes, max_bytes, done);
            });
      }
    }
  }

  // kj's writes. The response head that answers an edited request (above) is held until it is
  // whole, then written with Go's Connection header; everything else passes straight through.
  kj::Promise<void> Write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
    if (answering_ == CheckedHead::After::kKeepAlive && !unframed_) return inner_->write(pieces);
    std::string text;
    if (answering_ == CheckedHead::After::kKeepAlive) {
      // The body of an unframed answer: kj's chunk framing comes off.
      for (auto piece : pieces)
        text += unchunker_.Take(absl::string_view(piece.asChars().begin(), piece.size()));
    } else {
      for (auto piece : pieces) answer_head_.append(piece.asChars().begin(), piece.size());
      const size_t end = answer_head_.find("\r\n\r\n");
      if (end == std::string::npos) return kj::READY_NOW;
      EditedHead edited =
          EditAnswerHead(absl::string_view(answer_head_).substr(0, end + 2), answering_);
      text = std::move(edited.text);
      const absl::string_view rest = absl::string_view(answer_head_).substr(end + 4);
      if (edited.unframed) {
        // Go's net/http: an answer of unknown length to HTTP/1.0 runs to the connection's end
        // (keep-alive or not), and nothing after it is read.
        unframed_ = true;
        closing_ = true;
        text += unchunker_.Take(rest);
      } else {
        text.append(rest.data(), rest.size());
      }
      answering_ = CheckedHead::After::kKeepAlive;
      answer_head_.clear();
    }
    if (text.empty()) return kj::READY_NOW;
    auto owned = kj::heap<std::string>(std::move(text));
    auto written = inner_->write(owned->data(), owned->size());
    return written.attach(kj::mv(owned));
  }

  // True once a request asked for the close: the connection ends after its answer.
  bool closing() const { return closing_; }

 private:
  enum class Phase { kHead, kBody, kChunkSize, kChunkData, kChunkDataEnd, kTrailer, kOpaque };

  // Moves what it can from in_ to out_ by the current phase. False: nothing moved, more input
  // is needed (or the head was refused, or the input ended).
  bool Advance() {
    if (!refusal_.empty() || in_.empty()) return false;
    switch (phase_) {
      case Phase::kHead: {
        if (closing_) return false;  // nothing after a request that asked for the close
        // Go's server skips up to four CR or LF bytes before a request (RFC 7230 §3.5).
        size_t skip = 0;
        while (skip < in_.size() && skip < 4 && (in_[skip] == '\r' || in_[skip] == '\n')) ++skip;
        if (skip > 0) in_.erase(0, skip);
        size_t end = std::string::npos;
        for (size_t nl = in_.find('\n'); nl != std::string::npos; nl = in_.find('\n', nl + 1)) {
          // A blank line: "\n\n" or "\n\r\n".
          if (nl + 1 < in_.size() && in_[nl + 1] == '\n') {
            end = nl + 2;
            break;
          }
          if (nl + 2 < in_.size() && in_[nl + 1] == '\r' && in_[nl + 2] == '\n') {
            end = nl + 3;
            break;
          }
        }
        if (end == std::string::npos) {
          if (in_.size() > kMaxRequestHeadBytes) {
            refusal_ = CheckRequestHead(in_).refusal;  // the 431
          } else if (eof_ && !in_.empty()) {
            in_.clear();  // a head cut short by the client's close: no answer, as Go's
          }
          return false;
        }
        CheckedHead checked = CheckRequestHead(absl::string_view(in_).substr(0, end));
        if (!checked.refusal.empty()) {
          refusal_ = std::move(checked.refusal);
          return false;
        }
        in_.erase(0, end);
        // A head after an HTTP/1.0 keep-alive request is marked too (with no edit), so that kj
        // reads it only once that request's answer is out: it is not read at all when that
        // answer turns out unframed.
        if (checked.after != CheckedHead::After::kKeepAlive || after_keep_alive10_) {
          marks_.emplace_back(out_.size(), checked.after);
          closing_ = checked.after == CheckedHead::After::kClose ||
                     checked.after == CheckedHead::After::kClose10;
        }
        after_keep_alive10_ = checked.after == CheckedHead::After::kKeepAlive10;
        out_ += checked.normal;
        switch (checked.body) {
          case CheckedHead::Body::kNone:
            break;
          case CheckedHead::Body::kLength:
            phase_ = Phase::kBody;
            remaining_ = checked.length;
            break;
          case CheckedHead::Body::kChunked:
            phase_ = Phase::kChunkSize;
            break;
          case CheckedHead::Body::kOpaque:
            phase_ = Phase::kOpaque;
            break;
        }
        return true;
      }
      case Phase::kBody:
      case Phase::kChunkData: {
        const size_t n = std::min<uint64_t>(remaining_, in_.size());
        out_.append(in_, 0, n);
        in_.erase(0, n);
        remaining_ -= n;
        if (remaining_ == 0) phase_ = phase_ == Phase::kBody ? Phase::kHead : Phase::kChunkDataEnd;
        return true;
      }
      case Phase::kChunkSize:
      case Phase::kChunkDataEnd:
      case Phase::kTrailer: {
        const size_t nl = in_.find('\n');
        if (nl == std::string::npos) {
          if (in_.size() > kMaxChunkLineBytes) phase_ = Phase::kOpaque;
          return phase_ == Phase::kOpaque;
        }
        absl::string_view line = absl::string_view(in_).substr(0, nl);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        const Phase was = phase_;
        if (phase_ == Phase::kChunkSize) {
          // The size in hex, then optional extensions.
          absl::string_view digits = line.substr(0, line.find_first_of("; \t"));
          uint64_t size = 0;
          if (digits.empty() || digits.size() > 15 ||
              !absl::SimpleHexAtoi(std::string(digits), &size)) {
            phase_ = Phase::kOpaque;  // not framing the guard follows: kj refuses it
          } else if (size == 0) {
            phase_ = Phase::kTrailer;
          } else {
            phase_ = Phase::kChunkData;
            remaining_ = size;
          }
        } else if (phase_ == Phase::kChunkDataEnd) {
          // Anything but the line end after a chunk's data is not framing the guard follows.
          phase_ = line.empty() ? Phase::kChunkSize : Phase::kOpaque;
        } else if (line.empty()) {
          phase_ = Phase::kHead;  // the end of the trailers: the message is done
        }
        // kj-http reads neither chunk extensions nor trailers (Go reads both and etcd ignores
        // them): kj gets the size alone, and the trailers' end.
        if (phase_ == Phase::kOpaque) {
          out_.append(in_, 0, nl + 1);
        } else if (was == Phase::kChunkSize) {
          absl::StrAppend(&out_, line.substr(0, line.find_first_of("; \t")), "\r\n");
        } else if (line.empty()) {
          out_ += "\r\n";  // the line end after a chunk's data, or the end of the trailers
        }
        in_.erase(0, nl + 1);
        return true;
      }
      case Phase::kOpaque:
        out_ += in_;
        in_.clear();
        return true;
    }
    return false;
  }

  kj::Own<kj::AsyncIoStream> inner_;
  std::string in_;   // read from the socket, not yet checked
  std::string out_;  // checked, for kj
  size_t out_offset_ = 0;
  kj::Array<kj::byte> chunk_;
  Phase phase_ = Phase::kHead;
  uint64_t remaining_ = 0;
  bool eof_ = false;
  std::string refusal_;
  // Where in out_ each head whose answer is edited starts, with its edit.
  std::deque<std::pair<size_t, CheckedHead::After>> marks_;
  // The edit for the next response head kj writes, and that head's bytes so far.
  CheckedHead::After answering_ = CheckedHead::After::kKeepAlive;
  std::string answer_head_;
  // True once an answer went out unframed (Write): the connection ends after it.
  bool unframed_ = false;
  Unchunker unchunker_;
  // True when the last head read was an HTTP/1.0 keep-alive request's.
  bool after_keep_alive10_ = false;
  bool closing_ = false;
};

// What kj reads and writes: reads through the guard, everything else straight to the socket.
class GuardedStream final : public kj::AsyncIoStream {
 public:
  explicit GuardedStream(GuardState& state) : state_(state) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    return state_.Read(static_cast<kj::byte*>(buffer), min_bytes, max_bytes, 0);
  }
  kj::Promise<void> write(const void* buffer, size_t size) override {
    const kj::ArrayPtr<const kj::byte> piece(static_cast<const kj::byte*>(buffer), size);
    return state_.Write(kj::arrayPtr(&piece, 1));
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return state_.Write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override {
    return state_.inner().whenWriteDisconnected();
  }
  // kj half-closes and aborts at the end of a connection; a refusal still has to be written
  // after that, so the socket's own end waits for ServeCheckedHttp.
  void shutdownWrite() override {
    if (state_.refusal().empty()) state_.inner().shutdownWrite();
  }
  void abortRead() override {}
  void getsockopt(int level, int option, void* value, uint* length) override {
    state_.inner().getsockopt(level, option, value, length);
  }
  void setsockopt(int level, int option, const void* value, uint length) override {
    state_.inner().setsockopt(level, option, value, length);
  }
  void getsockname(struct sockaddr* addr, uint* length) override {
    state_.inner().getsockname(addr, length);
  }
  void getpeername(struct sockaddr* addr, uint* length) override {
    state_.inner().getpeername(addr, length);
  }

 private:
  GuardState& state_;
};

// Reads and discards until the end of the stream.
kj::Promise<void> Discard(kj::AsyncIoStream& stream, kj::Array<kj::byte> buffer) {
  auto read = stream.tryRead(buffer.begin(), 1, buffer.size());
  return read.then([&stream, buffer = kj::mv(buffer)](size_t n) mutable -> kj::Promise<void> {
    if (n == 0) return kj::READY_NOW;
    return Discard(stream, kj::mv(buffer));
  });
}

}  // namespace

kj::Promise<void> ServeCheckedHttp(kj::HttpServer& server, kj::Timer& timer,
                                   kj::Own<kj::AsyncIoStream> stream) {
  auto state = kj::heap<GuardState>(kj::mv(stream));
  GuardState& s = *state;
  return server.listenHttp(kj::heap<GuardedStream>(s))
      .then([]() {}, [](kj::Exception&&) {})
      .then([&s, &timer]() -> kj::Promise<void> {
        kj::AsyncIoStream& socket = s.inner();
        if (s.refusal().empty()) {
          if (!s.closing()) return kj::READY_NOW;
          // The answer to a request that asked for the close is out: the client reads the end
          // of the stream, and the socket closes once it closes too (or after the drain
          // timeout), so that bytes it sent after that request do not reset the answer away.
          socket.shutdownWrite();
          return timer
              .timeoutAfter(kRefusedDrainTimeout, Discard(socket, kj::heapArray<kj::byte>(4096)))
              .catch_([](kj::Exception&&) {});
        }
        return timer
            .timeoutAfter(kRefusedDrainTimeout,
                          socket.write(s.refusal().data(), s.refusal().size()).then([&socket]() {
                            socket.shutdownWrite();
                            return Discard(socket, kj::heapArray<kj::byte>(4096));
                          }))
            .catch_([](kj::Exception&&) {});
      })
      .attach(kj::mv(state));
}

}  // namespace kvstore::net::etcd
