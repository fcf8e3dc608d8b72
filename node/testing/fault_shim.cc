// An LD_PRELOAD library that injects storage faults into a real kvnode process, the way the
// simulator's disk does (store/sim_file_system.h), for the real-cluster scenario world
// (node/testing/real_world.h). Built as libkvfault.so; the world preloads it into every member.
//
// It intercepts write, pwrite, writev, pwritev, fallocate, ftruncate, fsync and fdatasync on files
// under a member's data directory (a path holding "/member/"). For such a file at
// <data-dir>/member/..., the control file <data-dir>.faults (beside the data directory, never in
// it) says which faults are armed, one line "<kind> <generation> [<args>]" each:
//
//   write_eio N   the next write to a WAL segment (member/wal/*.wal) fails with EIO
//   fsync_eio N   the next fsync or fdatasync of a WAL segment fails with EIO
//   tear N        at the next fsync or fdatasync of a WAL segment that has a write not yet
//                 synced (a group commit in flight), the process writes that last write's place
//                 to <data-dir>.torn ("<path> <offset> <bytes>") and kills itself with SIGKILL:
//                 the world then tears that write on disk as a power loss would
//   full N        the disk is full: a write, fallocate or ftruncate that grows any file of the
//                 data directory fails with ENOSPC once this process has grown them by 4 KiB
//                 since the fault was armed (writes inside a file's size, like those into a
//                 preallocated WAL segment, still succeed)
//   slow N A B    a slow disk: each fsync or fdatasync of a WAL segment takes A to B ms more
//   slow_copy N A each fsync of a snapshot download's copy of the backend
//                 (member/snapshot-*.tmp) takes A ms more: a copy that lasts (a large database)
//
// The file holds one line per fault: at most one of the one-shot kinds (write_eio, fsync_eio,
// tear), which fires once per generation in a process, and full and slow beside it. Without a
// control file (or with an empty one) every call goes straight to libc, and a file without a
// member data directory in its path is never touched.

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <mutex>

namespace {

constexpr int64_t kFullRoomBytes = 4 << 10;  // the simulator's kDiskFullRoomBytes
constexpr int kMaxFd = 4096;

template <typename F>
F Next(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

enum class Kind { kNone, kWriteEio, kFsyncEio, kTear };

// What the control file arms: at most one one-shot fault, a full disk, a slow disk.
struct Control {
  Kind kind = Kind::kNone;  // the one-shot fault
  long generation = 0;      // its generation
  long full = -1;           // the full disk's generation; -1: not full
  int64_t slow_min_ms = 0;  // each WAL fsync takes [slow_min_ms, slow_max_ms] more
  int64_t slow_max_ms = 0;
  int64_t slow_copy_ms = 0;  // each fsync of a snapshot copy takes this much more
};

// Where a file lives: its path, and the data directory it belongs to (empty: not a member's).
struct Place {
  char path[1024];
  size_t data_dir_len = 0;     // path[0, data_dir_len) is the data directory
  bool wal = false;            // a WAL segment
  bool snapshot_copy = false;  // a snapshot download's copy of the backend
};

bool PlaceOf(int fd, Place* place) {
  if (fd < 0) return false;
  char link[64];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  const ssize_t n = readlink(link, place->path, sizeof(place->path) - 1);
  if (n <= 0) return false;
  place->path[n] = '\0';
  const char* member = strstr(place->path, "/member/");
  if (member == nullptr) return false;
  place->data_dir_len = static_cast<size_t>(member - place->path);
  const char* wal = strstr(member, "/member/wal/");
  place->wal = wal == member && n > 4 && strcmp(place->path + n - 4, ".wal") == 0;
  place->snapshot_copy = strstr(member, "/member/snapshot-") == member && n > 4 &&
                         strcmp(place->path + n - 4, ".tmp") == 0;
  return true;
}

// The data directory plus `suffix`.
void SideFile(const Place& place, const char* suffix, char* out, size_t size) {
  snprintf(out, size, "%.*s%s", static_cast<int>(place.data_dir_len), place.path, suffix);
}

Control ReadControl(const Place& place) {
  Control control;
  char path[1100];
  SideFile(place, ".faults", path, sizeof(path));
  const int fd = static_cast<int>(syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC));
  if (fd < 0) return control;
  char text[512];
  const ssize_t n = syscall(SYS_read, fd, text, sizeof(text) - 1);
  syscall(SYS_close, fd);
  if (n <= 0) return control;
  text[n] = '\0';
  char* saved = nullptr;
  for (char* line = strtok_r(text, "\n", &saved); line != nullptr;
       line = strtok_r(nullptr, "\n", &saved)) {
    char kind[32];
    long generation = 0;
    long long a = 0;
    long long b = 0;
    const int fields = sscanf(line, "%31s %ld %lld %lld", kind, &generation, &a, &b);
    if (fields < 2) continue;
    if (strcmp(kind, "full") == 0) {
      control.full = generation;
    } else if (strcmp(kind, "slow") == 0 && fields == 4) {
      control.slow_min_ms = a;
      control.slow_max_ms = b;
    } else if (strcmp(kind, "slow_copy") == 0 && fields >= 3) {
      control.slow_copy_ms = a;
    } else {
      Kind one_shot = Kind::kNone;
      if (strcmp(kind, "write_eio") == 0) one_shot = Kind::kWriteEio;
      if (strcmp(kind, "fsync_eio") == 0) one_shot = Kind::kFsyncEio;
      if (strcmp(kind, "tear") == 0) one_shot = Kind::kTear;
      if (one_shot != Kind::kNone) {
        control.kind = one_shot;
        control.generation = generation;
      }
    }
  }
  return control;
}

std::mutex mu;
long fired_generation = -1;  // the last one-shot generation that fired (guarded by mu)
long full_generation = -1;   // the generation `grown` counts for
int64_t grown = 0;           // bytes the files grew by since then
// Per fd: the last write to a WAL segment not yet synced (bytes 0: none).
struct Pending {
  int64_t offset = 0;
  int64_t bytes = 0;
};
Pending pending[kMaxFd];

// A one-shot fault of `generation` fires now (once).
bool FireOnce(long generation) {
  std::lock_guard<std::mutex> lock(mu);
  if (fired_generation == generation) return false;
  fired_generation = generation;
  return true;
}

// Whether growing a file of `place` to `end` (from its size now) is refused for a full disk.
bool NoRoom(int fd, const Control& control, int64_t offset, int64_t bytes) {
  if (control.full < 0 || bytes <= 0) return false;
  struct stat st;
  if (fstat(fd, &st) != 0) return false;
  const int64_t end = offset + bytes;
  if (end <= st.st_size) return false;
  const int64_t growth = end - (offset > st.st_size ? offset : st.st_size);
  std::lock_guard<std::mutex> lock(mu);
  if (full_generation != control.full) {
    full_generation = control.full;
    grown = 0;
  }
  if (grown + growth > kFullRoomBytes) return true;
  grown += growth;
  return false;
}

// Before a write of `bytes` at `*offset` (-1: at the file offset, which it is set to): -1 with
// errno set when the write fails. `tracked`: a WAL write to remember once written.
int BeforeWrite(int fd, int64_t* offset_io, int64_t bytes, bool* tracked) {
  *tracked = false;
  Place place;
  if (!PlaceOf(fd, &place)) return 0;
  const Control control = ReadControl(place);
  if (*offset_io < 0) *offset_io = lseek(fd, 0, SEEK_CUR);
  const int64_t offset = *offset_io;
  if (control.kind == Kind::kWriteEio && place.wal && FireOnce(control.generation)) {
    errno = EIO;
    return -1;
  }
  if (offset >= 0 && NoRoom(fd, control, offset, bytes)) {
    errno = ENOSPC;
    return -1;
  }
  *tracked = place.wal && offset >= 0 && fd < kMaxFd;
  return 0;
}

void AfterWrite(int fd, int64_t offset, ssize_t written) {
  if (written <= 0) return;
  std::lock_guard<std::mutex> lock(mu);
  pending[fd] = Pending{offset, written};
}

// Sleeps `ms` milliseconds (none when not positive), through signals.
void SleepMs(int64_t ms) {
  if (ms <= 0) return;
  struct timespec delay = {static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1000000};
  while (nanosleep(&delay, &delay) != 0 && errno == EINTR) {
  }
}

// Before an fsync or fdatasync: -1 with errno set when it fails (the process may die here).
int BeforeSync(int fd) {
  Place place;
  if (!PlaceOf(fd, &place)) return 0;
  if (place.snapshot_copy) {
    SleepMs(ReadControl(place).slow_copy_ms);
    return 0;
  }
  if (!place.wal) return 0;
  const Control control = ReadControl(place);
  if (control.slow_max_ms > 0) {
    // A slow disk: this fsync takes [min, max] ms more.
    static thread_local unsigned seed = static_cast<unsigned>(syscall(SYS_gettid));
    const int64_t span = control.slow_max_ms - control.slow_min_ms;
    SleepMs(control.slow_min_ms + (span > 0 ? rand_r(&seed) % (span + 1) : 0));
  }
  if (control.kind == Kind::kFsyncEio && FireOnce(control.generation)) {
    errno = EIO;
    return -1;
  }
  if (control.kind == Kind::kTear && fd < kMaxFd) {
    Pending write;
    {
      std::lock_guard<std::mutex> lock(mu);
      write = pending[fd];
    }
    if (write.bytes > 0 && FireOnce(control.generation)) {
      char torn[1100];
      SideFile(place, ".torn", torn, sizeof(torn));
      char line[1200];
      const int len =
          snprintf(line, sizeof(line), "%s %lld %lld\n", place.path,
                   static_cast<long long>(write.offset), static_cast<long long>(write.bytes));
      const int out = static_cast<int>(
          syscall(SYS_openat, AT_FDCWD, torn, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
      if (out >= 0) {
        syscall(SYS_write, out, line, len);
        syscall(SYS_close, out);
      }
      // Power lost with the write in flight: nothing after this runs.
      kill(getpid(), SIGKILL);
      pause();
    }
  }
  return 0;
}

void AfterSync(int fd, int result) {
  if (result != 0 || fd < 0 || fd >= kMaxFd) return;
  std::lock_guard<std::mutex> lock(mu);
  pending[fd] = Pending{};
}

int64_t IovBytes(const struct iovec* iov, int count) {
  int64_t bytes = 0;
  for (int i = 0; i < count; ++i) bytes += static_cast<int64_t>(iov[i].iov_len);
  return bytes;
}

}  // namespace

extern "C" {

ssize_t write(int fd, const void* data, size_t bytes) {
  static auto real = Next<ssize_t (*)(int, const void*, size_t)>("write");
  bool tracked = false;
  int64_t offset = -1;
  if (fd > 2 && BeforeWrite(fd, &offset, static_cast<int64_t>(bytes), &tracked) != 0) return -1;
  const ssize_t written = real(fd, data, bytes);
  if (tracked) AfterWrite(fd, offset, written);
  return written;
}

ssize_t pwrite(int fd, const void* data, size_t bytes, off_t offset) {
  static auto real = Next<ssize_t (*)(int, const void*, size_t, off_t)>("pwrite");
  bool tracked = false;
  int64_t at = offset;
  if (BeforeWrite(fd, &at, static_cast<int64_t>(bytes), &tracked) != 0) return -1;
  const ssize_t written = real(fd, data, bytes, offset);
  if (tracked) AfterWrite(fd, offset, written);
  return written;
}

ssize_t pwrite64(int fd, const void* data, size_t bytes, off_t offset) {
  return pwrite(fd, data, bytes, offset);
}

ssize_t writev(int fd, const struct iovec* iov, int count) {
  static auto real = Next<ssize_t (*)(int, const struct iovec*, int)>("writev");
  bool tracked = false;
  int64_t offset = -1;
  if (fd > 2 && BeforeWrite(fd, &offset, IovBytes(iov, count), &tracked) != 0) return -1;
  const ssize_t written = real(fd, iov, count);
  if (tracked) AfterWrite(fd, offset, written);
  return written;
}

ssize_t pwritev(int fd, const struct iovec* iov, int count, off_t offset) {
  static auto real = Next<ssize_t (*)(int, const struct iovec*, int, off_t)>("pwritev");
  bool tracked = false;
  int64_t at = offset;
  if (BeforeWrite(fd, &at, IovBytes(iov, count), &tracked) != 0) return -1;
  const ssize_t written = real(fd, iov, count, offset);
  if (tracked) AfterWrite(fd, offset, written);
  return written;
}

ssize_t pwritev64(int fd, const struct iovec* iov, int count, off_t offset) {
  return pwritev(fd, iov, count, offset);
}

int fallocate(int fd, int mode, off_t offset, off_t bytes) {
  static auto real = Next<int (*)(int, int, off_t, off_t)>("fallocate");
  Place place;
  if (PlaceOf(fd, &place) && NoRoom(fd, ReadControl(place), offset, bytes)) {
    errno = ENOSPC;
    return -1;
  }
  return real(fd, mode, offset, bytes);
}

int fallocate64(int fd, int mode, off_t offset, off_t bytes) {
  return fallocate(fd, mode, offset, bytes);
}

int ftruncate(int fd, off_t size) {
  static auto real = Next<int (*)(int, off_t)>("ftruncate");
  Place place;
  if (PlaceOf(fd, &place) && NoRoom(fd, ReadControl(place), 0, size)) {
    errno = ENOSPC;
    return -1;
  }
  return real(fd, size);
}

int ftruncate64(int fd, off_t size) { return ftruncate(fd, size); }

int fsync(int fd) {
  static auto real = Next<int (*)(int)>("fsync");
  if (BeforeSync(fd) != 0) return -1;
  const int result = real(fd);
  AfterSync(fd, result);
  return result;
}

int fdatasync(int fd) {
  static auto real = Next<int (*)(int)>("fdatasync");
  if (BeforeSync(fd) != 0) return -1;
  const int result = real(fd);
  AfterSync(fd, result);
  return result;
}

}  // extern "C"
