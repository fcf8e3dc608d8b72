#include "store/posix_file_system.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace kvstore::store {
namespace {

// rw-r--r-- and rwxr-xr-x before the umask, as the usual tools create them.
constexpr mode_t kFileMode = 0644;
constexpr mode_t kDirMode = 0755;

// "No space left on device (ENOSPC)": the text for people, the name for grep and for the codes
// file_system.h promises.
std::string ErrnoText(int error_number) {
  char buffer[256];
  // The GNU strerror_r: thread-safe, returns the text (in `buffer` or a static string).
  const char* text = strerror_r(error_number, buffer, sizeof(buffer));
  const char* name = strerrorname_np(error_number);
  return absl::StrCat(text, " (", name != nullptr ? name : absl::StrCat("errno ", error_number),
                      ")");
}

absl::Status ErrnoStatus(int error_number, absl::string_view operation, absl::string_view path) {
  std::string message = absl::StrCat(operation, " ", path, ": ", ErrnoText(error_number));
  switch (error_number) {
    case ENOSPC:
      return absl::ResourceExhaustedError(message);
    case ENOENT:
      return absl::NotFoundError(message);
    case EEXIST:
      return absl::AlreadyExistsError(message);
    case EIO:
      return absl::InternalError(message);
    default:
      return absl::InternalError(message);
  }
}

// Runs `call` (a system call returning -1 and setting errno on failure) until a signal does not
// interrupt it.
template <typename Call>
auto RetryOnEintr(Call call) {
  decltype(call()) result;
  do {
    result = call();
  } while (result == -1 && errno == EINTR);
  return result;
}

class PosixFile : public File {
 public:
  PosixFile(int fd, std::string path, uint64_t end_offset_bytes)
      : fd_(fd), path_(std::move(path)), end_offset_bytes_(end_offset_bytes) {}
  // close's result is ignored: durability comes only from a successful Sync or DataSync.
  ~PosixFile() override { close(fd_); }

  absl::Status Append(absl::string_view data) override {
    absl::MutexLock lock(&mutex_);
    absl::Status status = WriteFully(end_offset_bytes_, data);
    if (status.ok()) end_offset_bytes_ += data.size();
    return status;
  }

  absl::Status WriteAt(uint64_t offset, absl::string_view data) override {
    absl::MutexLock lock(&mutex_);
    absl::Status status = WriteFully(offset, data);
    if (status.ok()) end_offset_bytes_ = std::max(end_offset_bytes_, offset + data.size());
    return status;
  }

  absl::Status ReadAt(uint64_t offset, size_t size, std::string* out) const override {
    out->resize(size);
    size_t read_bytes = 0;
    while (read_bytes < size) {
      ssize_t result = RetryOnEintr([&] {
        return pread(fd_, out->data() + read_bytes, size - read_bytes, offset + read_bytes);
      });
      if (result == -1) {
        out->clear();
        return ErrnoStatus(errno, "pread", path_);
      }
      if (result == 0) break;  // end of file
      read_bytes += result;
    }
    out->resize(read_bytes);
    return absl::OkStatus();
  }

  absl::Status Sync() override {
    if (RetryOnEintr([&] { return fsync(fd_); }) == -1) return ErrnoStatus(errno, "fsync", path_);
    return absl::OkStatus();
  }

  absl::Status DataSync() override {
    if (RetryOnEintr([&] { return fdatasync(fd_); }) == -1) {
      return ErrnoStatus(errno, "fdatasync", path_);
    }
    return absl::OkStatus();
  }

  absl::Status Truncate(uint64_t size) override {
    absl::MutexLock lock(&mutex_);
    absl::StatusOr<uint64_t> current_size = Size();
    if (!current_size.ok()) return current_size.status();
    if (size > *current_size) {
      int result = RetryOnEintr(
          [&] { return fallocate(fd_, /*mode=*/0, *current_size, size - *current_size); });
      if (result == 0) {
        end_offset_bytes_ = size;
        return absl::OkStatus();
      }
      // Without fallocate support, ftruncate below extends the file sparsely.
      if (errno != EOPNOTSUPP && errno != ENOSYS) return ErrnoStatus(errno, "fallocate", path_);
    }
    if (RetryOnEintr([&] { return ftruncate(fd_, size); }) == -1) {
      return ErrnoStatus(errno, "ftruncate", path_);
    }
    end_offset_bytes_ = size;
    return absl::OkStatus();
  }

  absl::StatusOr<uint64_t> Size() const override {
    struct stat info;
    if (fstat(fd_, &info) == -1) return ErrnoStatus(errno, "fstat", path_);
    return static_cast<uint64_t>(info.st_size);
  }

  const std::string& path() const override { return path_; }

 private:
  // pwrite until every byte is written: a regular file may take fewer bytes than asked (a signal
  // after some were copied, a nearly full disk) without that being an error.
  absl::Status WriteFully(uint64_t offset, absl::string_view data)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    size_t written_bytes = 0;
    while (written_bytes < data.size()) {
      ssize_t result = RetryOnEintr([&] {
        return pwrite(fd_, data.data() + written_bytes, data.size() - written_bytes,
                      offset + written_bytes);
      });
      if (result == -1) return ErrnoStatus(errno, "pwrite", path_);
      if (result == 0) {
        return absl::InternalError(
            absl::StrCat("pwrite ", path_, ": wrote 0 of ", data.size() - written_bytes, " bytes"));
      }
      written_bytes += result;
    }
    return absl::OkStatus();
  }

  const int fd_;
  const std::string path_;
  absl::Mutex mutex_;
  // Where Append writes next: the end of the last successful write or Truncate.
  uint64_t end_offset_bytes_ ABSL_GUARDED_BY(mutex_);
};

class PosixFileLock : public FileLock {
 public:
  explicit PosixFileLock(int fd) : fd_(fd) {}
  // Closing the only descriptor of the open file description releases the flock.
  ~PosixFileLock() override { close(fd_); }

 private:
  const int fd_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<File>> PosixFileSystem::Open(const std::string& path,
                                                            OpenMode mode) {
  int flags = O_CLOEXEC;
  switch (mode) {
    case OpenMode::kRead:
      flags |= O_RDONLY;
      break;
    case OpenMode::kReadWrite:
      flags |= O_RDWR;
      break;
    case OpenMode::kCreate:
      flags |= O_RDWR | O_CREAT | O_EXCL;
      break;
    case OpenMode::kCreateTruncate:
      flags |= O_RDWR | O_CREAT | O_TRUNC;
      break;
  }
  int fd = RetryOnEintr([&] { return open(path.c_str(), flags, kFileMode); });
  if (fd == -1) return ErrnoStatus(errno, "open", path);
  struct stat info;
  if (fstat(fd, &info) == -1) {
    absl::Status status = ErrnoStatus(errno, "fstat", path);
    close(fd);
    return status;
  }
  return std::make_unique<PosixFile>(fd, path, static_cast<uint64_t>(info.st_size));
}

absl::Status PosixFileSystem::Rename(const std::string& from, const std::string& to) {
  if (rename(from.c_str(), to.c_str()) == -1) {
    return ErrnoStatus(errno, "rename", absl::StrCat(from, " -> ", to));
  }
  return absl::OkStatus();
}

absl::Status PosixFileSystem::SyncDir(const std::string& dir) {
  int fd = RetryOnEintr([&] { return open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); });
  if (fd == -1) return ErrnoStatus(errno, "open directory", dir);
  absl::Status status = absl::OkStatus();
  if (RetryOnEintr([&] { return fsync(fd); }) == -1) status = ErrnoStatus(errno, "fsync", dir);
  close(fd);
  return status;
}

absl::Status PosixFileSystem::Remove(const std::string& path) {
  if (unlink(path.c_str()) == -1) return ErrnoStatus(errno, "unlink", path);
  return absl::OkStatus();
}

absl::Status PosixFileSystem::CreateDir(const std::string& dir) {
  // Every prefix that ends a component, then `dir` itself; EEXIST is expected for the existing
  // ones, and a prefix that is a file makes the next mkdir fail with ENOTDIR.
  for (size_t end = 1; end <= dir.size(); ++end) {
    if (end < dir.size() && (dir[end] != '/' || dir[end - 1] == '/')) continue;
    std::string prefix = dir.substr(0, end);
    if (mkdir(prefix.c_str(), kDirMode) == -1 && errno != EEXIST) {
      return ErrnoStatus(errno, "mkdir", prefix);
    }
  }
  struct stat info;
  if (stat(dir.c_str(), &info) == -1) return ErrnoStatus(errno, "stat", dir);
  if (!S_ISDIR(info.st_mode)) return ErrnoStatus(ENOTDIR, "mkdir", dir);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> PosixFileSystem::List(const std::string& dir) const {
  DIR* stream = opendir(dir.c_str());
  if (stream == nullptr) return ErrnoStatus(errno, "opendir", dir);
  std::vector<std::string> names;
  while (true) {
    errno = 0;  // readdir returns nullptr both at the end and on an error
    const dirent* entry = readdir(stream);
    if (entry == nullptr) break;
    absl::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  int readdir_errno = errno;
  closedir(stream);
  if (readdir_errno != 0) return ErrnoStatus(readdir_errno, "readdir", dir);
  std::sort(names.begin(), names.end());
  return names;
}

bool PosixFileSystem::Exists(const std::string& path) const {
  struct stat info;
  return stat(path.c_str(), &info) == 0;
}

absl::StatusOr<std::unique_ptr<FileLock>> PosixFileSystem::Lock(const std::string& path) {
  int fd =
      RetryOnEintr([&] { return open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, kFileMode); });
  if (fd == -1) return ErrnoStatus(errno, "open lock file", path);
  if (RetryOnEintr([&] { return flock(fd, LOCK_EX | LOCK_NB); }) == -1) {
    int flock_errno = errno;
    close(fd);
    if (flock_errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat("lock ", path,
                       ": another process holds it (or another FileLock of this "
                       "process)"));
    }
    return ErrnoStatus(flock_errno, "flock", path);
  }
  return std::make_unique<PosixFileLock>(fd);
}

}  // namespace kvstore::store
