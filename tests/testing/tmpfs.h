// A small tmpfs mounted for one test (a file system that fills up), and
// unmounted with its directory when the object goes away. Needs root (CI
// runs as root); ok() is false where mounting is not allowed, and the test
// then skips.
#ifndef POLEDGER_TESTS_TESTING_TMPFS_H_
#define POLEDGER_TESTS_TESTING_TMPFS_H_

#include <sys/mount.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace poledger {
namespace testing {

class Tmpfs {
 public:
  explicit Tmpfs(uint64_t bytes) {
    std::string pattern = "/tmp/poledger-tmpfs-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) return;
    path_ = pattern;
    const std::string size = "size=" + std::to_string(bytes);
    mounted_ = geteuid() == 0 &&
               mount("tmpfs", path_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
                     size.c_str()) == 0;
  }
  ~Tmpfs() {
    if (mounted_) umount2(path_.c_str(), MNT_DETACH);
    if (!path_.empty()) rmdir(path_.c_str());
  }
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;

  bool ok() const { return mounted_; }
  const std::string& path() const { return path_; }

  // Writes a file of `bytes` zero bytes at `name` inside the mount: space
  // to take away now and give back later. False if it did not fit.
  bool Ballast(const std::string& name, uint64_t bytes) const {
    std::ofstream out(path_ + "/" + name, std::ios::binary);
    const std::vector<char> block(1 << 20, 0);
    for (uint64_t left = bytes; left > 0;) {
      const uint64_t n = left < block.size() ? left : block.size();
      out.write(block.data(), static_cast<std::streamsize>(n));
      left -= n;
    }
    out.flush();
    return static_cast<bool>(out);
  }

 private:
  std::string path_;
  bool mounted_ = false;
};

}  // namespace testing
}  // namespace poledger

#endif  // POLEDGER_TESTS_TESTING_TMPFS_H_
