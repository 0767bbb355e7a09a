// The web console's files (console/), compiled into the server by
// cmake/embed_console.cmake.
#ifndef POLEDGER_SERVER_CONSOLE_ASSETS_H_
#define POLEDGER_SERVER_CONSOLE_ASSETS_H_

#include <string_view>
#include <vector>

namespace poledger {

struct ConsoleAsset {
  std::string_view name;  // "index.html"
  std::string_view content_type;
  std::string_view body;
};

const std::vector<ConsoleAsset>& ConsoleAssets();

}  // namespace poledger

#endif  // POLEDGER_SERVER_CONSOLE_ASSETS_H_
