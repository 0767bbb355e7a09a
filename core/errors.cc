#include "core/errors.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace poledger {
namespace core {

absl::Status InvalidField(absl::string_view field, absl::string_view why,
                          absl::string_view reason_code) {
  absl::Status status =
      absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
  status.SetPayload(kReasonPayload, absl::Cord(reason_code));
  status.SetPayload(kFieldPayload, absl::Cord(field));
  return status;
}

absl::Status DomainError(absl::StatusCode code, absl::string_view reason_code,
                         absl::string_view message) {
  absl::Status status(code, message);
  status.SetPayload(kReasonPayload, absl::Cord(reason_code));
  return status;
}

namespace {

// Decodes the UTF-8 character at the start of `text`: returns its length
// (1-4) and sets `code_point`, or returns 0 if `text` does not start with a
// well-formed character (then its first byte stands alone).
size_t DecodeUtf8(absl::string_view text, uint32_t& code_point) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t b0 = byte(0);
  size_t length;
  uint32_t min;
  if (b0 < 0x80) {
    code_point = b0;
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    length = 2, min = 0x80, code_point = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    length = 3, min = 0x800, code_point = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    length = 4, min = 0x10000, code_point = b0 & 0x07;
  } else {
    return 0;
  }
  if (text.size() < length) return 0;
  for (size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return 0;
    code_point = (code_point << 6) | (byte(i) & 0x3F);
  }
  if (code_point < min || code_point > 0x10FFFF ||
      (code_point >= 0xD800 && code_point <= 0xDFFF)) {
    return 0;
  }
  return length;
}

// Control, format and bidi characters: shown escaped, never as themselves.
bool IsInvisible(uint32_t c) {
  return c < 0x20 || c == 0x7F || (c >= 0x80 && c <= 0x9F) || c == 0xAD ||
         (c >= 0x200B && c <= 0x200F) || (c >= 0x2028 && c <= 0x202E) ||
         (c >= 0x2060 && c <= 0x206F) || c == 0xFEFF ||
         (c >= 0xFFF9 && c <= 0xFFFB);
}

}  // namespace

std::string Quote(absl::string_view value) {
  constexpr size_t kMaxChars = 32;
  std::string out = "\"";
  size_t i = 0;
  for (size_t chars = 0; i < value.size() && chars < kMaxChars; ++chars) {
    uint32_t c = 0;
    const size_t n = DecodeUtf8(value.substr(i), c);
    if (n == 0) {
      absl::StrAppendFormat(&out, "\\x%02X", static_cast<uint8_t>(value[i]));
      ++i;
      continue;
    }
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (IsInvisible(c)) {
      absl::StrAppendFormat(&out, "\\u{%04X}", c);
    } else {
      out.append(value.data() + i, n);
    }
    i += n;
  }
  out.push_back('"');
  if (i < value.size()) {
    absl::StrAppend(&out, "... (", value.size() - i, " more bytes)");
  }
  return out;
}

std::string QuoteFirstChar(absl::string_view text) {
  if (text.empty()) return "\"\"";
  uint32_t c;
  const size_t n = DecodeUtf8(text, c);
  return Quote(text.substr(0, n == 0 ? 1 : n));
}

size_t CharCount(absl::string_view text) {
  size_t count = 0;
  for (size_t i = 0; i < text.size(); ++count) {
    uint32_t c;
    const size_t n = DecodeUtf8(text.substr(i), c);
    i += n == 0 ? 1 : n;
  }
  return count;
}

std::string SafeMessage(absl::string_view message, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(message.size(), max_bytes));
  for (size_t i = 0; i < message.size();) {
    uint32_t c;
    const size_t n = DecodeUtf8(message.substr(i), c);
    const std::string piece =
        n == 0 ? absl::StrFormat("\\x%02X", static_cast<uint8_t>(message[i]))
               : std::string(message.substr(i, n));
    if (out.size() + piece.size() > max_bytes) {
      out.append("...");
      break;
    }
    out.append(piece);
    i += n == 0 ? 1 : n;
  }
  return out;
}

std::string ReasonOf(const absl::Status& status) {
  auto payload = status.GetPayload(kReasonPayload);
  return payload.has_value() ? std::string(*payload) : std::string();
}

absl::Status WithMetadata(absl::Status status, absl::string_view key,
                          absl::string_view value) {
  status.SetPayload(absl::StrCat(kMetadataPayloadPrefix, key),
                    absl::Cord(value));
  return status;
}

void ForEachMetadata(
    const absl::Status& status,
    const std::function<void(absl::string_view, absl::string_view)>& visit) {
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& value) {
    if (absl::StartsWith(url, kMetadataPayloadPrefix)) {
      visit(url.substr(kMetadataPayloadPrefix.size()), std::string(value));
    }
  });
}

std::string FieldOf(const absl::Status& status) {
  auto payload = status.GetPayload(kFieldPayload);
  return payload.has_value() ? std::string(*payload) : std::string();
}

}  // namespace core
}  // namespace poledger
