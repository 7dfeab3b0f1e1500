/*
 * Power-cut shim (LD_PRELOAD). Watches one file (POWERCUT_FILE, default data.mdb) and remembers every write
 * to it that is not durable yet; at the POWERCUT_AT-th durability point it "cuts the power": each pending
 * write is kept, dropped or torn at 512-byte sectors, at random, and the process SIGKILLs itself.
 *
 * What is durable (the Linux rules LMDB relies on):
 *   - write/pwrite/writev/pwritev on the file: NOT durable; pending until the next fsync or fdatasync
 *     of the file (through any descriptor of it).
 *   - a write through a descriptor opened O_DSYNC or O_SYNC (LMDB's meta page): durable when it returns.
 * A durability point is an fsync/fdatasync of the file, or a write through an O_DSYNC/O_SYNC descriptor.
 * The cut happens at the point itself: the fsync does not complete; the O_DSYNC write is still pending
 * (it may be kept, dropped or, if it spans sectors, torn).
 *
 * Writes go through to the file at once (so the process reads back what it wrote, through read() or its
 * mmap, as it would from the page cache); the shim keeps the bytes each pending write replaced. At the cut
 * it restores those (newest first), applies again the writes (or sectors) that are kept (oldest first),
 * and truncates the file to the size it had at the last durability point, or to the end of the last kept
 * sector beyond it. The file is then what a disk would hold after the power came back.
 *
 * Environment:
 *   POWERCUT_FILE    base name of the watched file (default data.mdb)
 *   POWERCUT_AT      the durability point (1, 2, ...) at which to cut; unset or 0: never
 *   POWERCUT_SEED    seed of the fates of pending writes (default 1)
 *   POWERCUT_FATE    random (default) | keep | drop | tear: the fate of every pending write
 *   POWERCUT_TEAR    1 (default): random fates include torn writes; 0: each write is whole or absent
 *   POWERCUT_REPORT  file that receives one line describing the cut (and a WRITEMAP line if the watched
 *                    file is mapped writable, which would bypass the shim)
 *   POWERCUT_DETAIL  file that receives one line per pending write at the cut: offset, length, fate, and
 *                    for a torn write a mask of its sectors (1 kept, 0 lost)
 *   POWERCUT_UNSAFE  1: a control that must fail: fsync and O_DSYNC make nothing durable, and the cut
 *                    drops every write made since the process started
 *
 * Not modelled: dup()/dup2()/fcntl(F_DUPFD) descriptors of the watched file (LMDB makes none), writes
 * through a writable shared mapping (reported as WRITEMAP; Ferry does not use MDB_WRITEMAP), metadata
 * other than the file size (the directory entry of a new file is assumed durable), and reordering
 * inside one sector (a sector is written whole or not at all, as LMDB assumes of its meta page).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define SECTOR 512
#define MAX_FDS 65536

enum { FATE_KEEP, FATE_DROP, FATE_TEAR };

struct pending {
    off_t offset;
    size_t length;
    unsigned char *old;   /* the bytes it replaced; zeros where it wrote beyond the end of the file */
    unsigned char *new;
    int durable;          /* an O_DSYNC write that returned: kept whatever happens */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char watched[MAX_FDS];  /* 0 no, 1 the file, 2 the file opened O_DSYNC/O_SYNC */
static char target[256] = "data.mdb";
static dev_t target_dev;
static ino_t target_ino;
static int have_target;
static int shadow = -1;                 /* our own O_RDWR descriptor of the file */
static off_t synced_size;
static long cut_at, points;
static int unsafe, tear = 1, fixed_fate = -1;
static uint64_t rng_state = 1;
static struct pending *pend;
static size_t npend, cappend;
static char report_path[4096], detail_path[4096];

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev2)(int, const struct iovec *, int, off_t, int);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_close)(int);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);

static uint64_t next_random(void) {  /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static void say(const char *path, const char *text) {
    if (!path[0]) return;
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return;
    syscall(SYS_write, fd, text, strlen(text));
    syscall(SYS_close, fd);
}

static void resolve(void) {
    if (real_write) return;
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    real_writev = dlsym(RTLD_NEXT, "writev");
    real_pwritev = dlsym(RTLD_NEXT, "pwritev");
    real_pwritev2 = dlsym(RTLD_NEXT, "pwritev2");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_close = dlsym(RTLD_NEXT, "close");
    real_mmap = dlsym(RTLD_NEXT, "mmap");
}

__attribute__((constructor)) static void setup(void) {
    resolve();
    const char *v;
    if ((v = getenv("POWERCUT_FILE")) && *v) snprintf(target, sizeof target, "%s", v);
    if ((v = getenv("POWERCUT_AT"))) cut_at = atol(v);
    if ((v = getenv("POWERCUT_SEED"))) {  /* splitmix64 of the seed: nearby seeds, unrelated streams */
        uint64_t z = strtoull(v, NULL, 10) + 0x9E3779B97F4A7C15ULL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        rng_state = (z ^ (z >> 31)) | 1;
    }
    if ((v = getenv("POWERCUT_TEAR"))) tear = atoi(v) != 0;
    if ((v = getenv("POWERCUT_UNSAFE"))) unsafe = atoi(v) != 0;
    if ((v = getenv("POWERCUT_FATE"))) {
        if (!strcmp(v, "keep")) fixed_fate = FATE_KEEP;
        else if (!strcmp(v, "drop")) fixed_fate = FATE_DROP;
        else if (!strcmp(v, "tear")) fixed_fate = FATE_TEAR;
    }
    if ((v = getenv("POWERCUT_REPORT"))) snprintf(report_path, sizeof report_path, "%s", v);
    if ((v = getenv("POWERCUT_DETAIL"))) snprintf(detail_path, sizeof detail_path, "%s", v);
}

static int is_target(const char *path) {
    const char *base = strrchr(path, '/');
    return strcmp(base ? base + 1 : path, target) == 0;
}

/* After a successful open of `path` (relative to `dir`) as `fd`. */
static void opened(int dir, const char *path, int fd, int flags) {
    if (fd < 0 || fd >= MAX_FDS || !path || !is_target(path)) return;
    struct stat st;
    if (fstat(fd, &st) != 0) return;
    pthread_mutex_lock(&lock);
    if (!have_target) {
        have_target = 1;
        target_dev = st.st_dev;
        target_ino = st.st_ino;
        synced_size = st.st_size;
        shadow = (int)syscall(SYS_openat, dir, path, O_RDWR | O_CLOEXEC);
    }
    if (st.st_dev == target_dev && st.st_ino == target_ino)
        watched[fd] = (flags & O_DSYNC) ? 2 : 1;  /* O_SYNC includes the O_DSYNC bit */
    pthread_mutex_unlock(&lock);
}

static int is_watched(int fd) { return fd >= 0 && fd < MAX_FDS && watched[fd]; }

static void cut(const char *kind);

/* Before a write of `length` bytes at `offset`: remember what it replaces. Called with the lock held. */
static struct pending *remember(off_t offset, const void *data, size_t length) {
    if (npend == cappend) {
        cappend = cappend ? cappend * 2 : 64;
        pend = realloc(pend, cappend * sizeof *pend);
        if (!pend) abort();
    }
    struct pending *p = &pend[npend++];
    p->offset = offset;
    p->length = length;
    p->durable = 0;
    p->old = calloc(1, length ? length : 1);
    p->new = malloc(length ? length : 1);
    if (!p->old || !p->new) abort();
    memcpy(p->new, data, length);
    size_t got = 0;
    while (got < length) {
        ssize_t n = pread(shadow, p->old + got, length - got, offset + (off_t)got);
        if (n <= 0) break;  /* beyond the end of the file: zeros */
        got += (size_t)n;
    }
    return p;
}

static void forget_all(void) {
    for (size_t i = 0; i < npend; i++) { free(pend[i].old); free(pend[i].new); }
    npend = 0;
}

static void durable_now(void) {
    struct stat st;
    if (!unsafe) {
        forget_all();
        if (fstat(shadow, &st) == 0) synced_size = st.st_size;
    }
}

/* The write itself, for every write entry point. `how` does the real call. */
#define WATCHED_WRITE(fd, offset, data, length, call)                            \
    do {                                                                         \
        pthread_mutex_lock(&lock);                                               \
        struct pending *p_ = remember((offset), (data), (length));               \
        ssize_t rc_ = (call);                                                    \
        int saved_ = errno;                                                      \
        if (rc_ < 0) { free(p_->old); free(p_->new); npend--; }                  \
        else if ((size_t)rc_ < p_->length) p_->length = (size_t)rc_;             \
        if (rc_ >= 0 && watched[fd] == 2) {                                      \
            points++;                                                            \
            if (cut_at > 0 && points == cut_at) cut("dsync-write");              \
            if (!unsafe) p_->durable = 1;                                        \
        }                                                                        \
        pthread_mutex_unlock(&lock);                                             \
        errno = saved_;                                                          \
        return rc_;                                                              \
    } while (0)

static unsigned char *flatten(const struct iovec *iov, int count, size_t *length) {
    size_t total = 0;
    for (int i = 0; i < count; i++) total += iov[i].iov_len;
    unsigned char *buffer = malloc(total ? total : 1), *at = buffer;
    if (!buffer) abort();
    for (int i = 0; i < count; i++) { memcpy(at, iov[i].iov_base, iov[i].iov_len); at += iov[i].iov_len; }
    *length = total;
    return buffer;
}

ssize_t write(int fd, const void *data, size_t length) {
    resolve();
    if (!is_watched(fd)) return real_write(fd, data, length);
    off_t offset = lseek(fd, 0, SEEK_CUR);
    WATCHED_WRITE(fd, offset, data, length, real_write(fd, data, length));
}

ssize_t pwrite(int fd, const void *data, size_t length, off_t offset) {
    resolve();
    if (!is_watched(fd)) return real_pwrite(fd, data, length, offset);
    WATCHED_WRITE(fd, offset, data, length, real_pwrite(fd, data, length, offset));
}

ssize_t pwrite64(int fd, const void *data, size_t length, off_t offset) {
    resolve();
    if (!is_watched(fd)) return real_pwrite64(fd, data, length, offset);
    WATCHED_WRITE(fd, offset, data, length, real_pwrite64(fd, data, length, offset));
}

enum vector_call { VEC_WRITEV, VEC_PWRITEV, VEC_PWRITEV2 };

/* writev, pwritev and pwritev2 on a watched descriptor: the write is kept pending like any other.
   writev (and an offset of -1) writes at the current file offset. */
static ssize_t vector_at(int fd, const struct iovec *iov, int count, off_t offset, int flags, enum vector_call call) {
    int two = call == VEC_PWRITEV2;
    size_t length;
    unsigned char *data = flatten(iov, count, &length);
    if (offset == -1) offset = lseek(fd, 0, SEEK_CUR);
    ssize_t result;
    pthread_mutex_lock(&lock);
    struct pending *p = remember(offset, data, length);
    result = call == VEC_WRITEV ? real_writev(fd, iov, count)
           : two ? real_pwritev2(fd, iov, count, offset, flags) : real_pwritev(fd, iov, count, offset);
    int saved = errno;
    if (result < 0) { free(p->old); free(p->new); npend--; }
    else if ((size_t)result < p->length) p->length = (size_t)result;
    if (result >= 0 && (watched[fd] == 2 || (two && (flags & (RWF_DSYNC | RWF_SYNC))))) {
        points++;
        if (cut_at > 0 && points == cut_at) cut("dsync-write");
        if (!unsafe) p->durable = 1;
    }
    pthread_mutex_unlock(&lock);
    free(data);
    errno = saved;
    return result;
}

ssize_t writev(int fd, const struct iovec *iov, int count) {
    resolve();
    if (!is_watched(fd)) return real_writev(fd, iov, count);
    return vector_at(fd, iov, count, -1, 0, VEC_WRITEV);
}

ssize_t pwritev(int fd, const struct iovec *iov, int count, off_t offset) {
    resolve();
    if (!is_watched(fd)) return real_pwritev(fd, iov, count, offset);
    return vector_at(fd, iov, count, offset, 0, VEC_PWRITEV);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int count, off_t offset) { return pwritev(fd, iov, count, offset); }

ssize_t pwritev2(int fd, const struct iovec *iov, int count, off_t offset, int flags) {
    resolve();
    if (!is_watched(fd)) return real_pwritev2(fd, iov, count, offset, flags);
    return vector_at(fd, iov, count, offset, flags, VEC_PWRITEV2);
}

ssize_t pwritev64v2(int fd, const struct iovec *iov, int count, off_t offset, int flags) { return pwritev2(fd, iov, count, offset, flags); }

static int sync_point(int fd, int (*real)(int), const char *kind) {
    pthread_mutex_lock(&lock);
    points++;
    if (cut_at > 0 && points == cut_at) cut(kind);
    int rc = real(fd);
    int saved = errno;
    if (rc == 0) durable_now();
    pthread_mutex_unlock(&lock);
    errno = saved;
    return rc;
}

int fsync(int fd) {
    resolve();
    return is_watched(fd) ? sync_point(fd, real_fsync, "fsync") : real_fsync(fd);
}

int fdatasync(int fd) {
    resolve();
    return is_watched(fd) ? sync_point(fd, real_fdatasync, "fdatasync") : real_fdatasync(fd);
}

int close(int fd) {
    resolve();
    if (fd >= 0 && fd < MAX_FDS) watched[fd] = 0;  /* what it wrote stays pending: close does not sync */
    return real_close(fd);
}

void *mmap(void *address, size_t length, int prot, int flags, int fd, off_t offset) {
    resolve();
    if (is_watched(fd) && (prot & PROT_WRITE) && (flags & MAP_SHARED))
        say(report_path, "WRITEMAP the watched file is mapped writable and shared: writes through the map bypass the shim\n");
    return real_mmap(address, length, prot, flags, fd, offset);
}

void *mmap64(void *address, size_t length, int prot, int flags, int fd, off_t offset) {
    return mmap(address, length, prot, flags, fd, offset);
}

/* open and its relatives: the real call, then note the descriptor if it is the watched file. */
#define OPEN_MODE(flags, mode)                                                  \
    mode_t mode = 0;                                                            \
    if ((flags) & (O_CREAT | __O_TMPFILE)) {                                    \
        va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); \
    }

int open(const char *path, int flags, ...) {
    OPEN_MODE(flags, mode)
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
    opened(AT_FDCWD, path, fd, flags);
    return fd;
}

int open64(const char *path, int flags, ...) {
    OPEN_MODE(flags, mode)
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
    opened(AT_FDCWD, path, fd, flags);
    return fd;
}

int openat(int dir, const char *path, int flags, ...) {
    OPEN_MODE(flags, mode)
    int fd = (int)syscall(SYS_openat, dir, path, flags, mode);
    opened(dir, path, fd, flags);
    return fd;
}

int openat64(int dir, const char *path, int flags, ...) {
    OPEN_MODE(flags, mode)
    int fd = (int)syscall(SYS_openat, dir, path, flags, mode);
    opened(dir, path, fd, flags);
    return fd;
}

int __open_2(const char *path, int flags) { return open(path, flags); }
int __open64_2(const char *path, int flags) { return open(path, flags); }

/* The power cut. Called with the lock held; never returns. */
static void cut(const char *kind) {
    size_t kept = 0, dropped = 0, torn = 0, sectors_kept = 0, sectors_lost = 0, bytes = 0, durable = 0;
    int *fate = calloc(npend ? npend : 1, sizeof *fate);
    unsigned char **masks = calloc(npend ? npend : 1, sizeof *masks);
    off_t final_size = synced_size;
    /* Decide. */
    for (size_t i = 0; i < npend; i++) {
        struct pending *p = &pend[i];
        if (!p->durable) bytes += p->length;
        off_t first = p->offset / SECTOR, last = (p->offset + (off_t)p->length + SECTOR - 1) / SECTOR;
        size_t sectors = (size_t)(last - first);
        int f;
        if (p->durable) {  /* not pending: already on disk */
            fate[i] = FATE_KEEP;
            durable++;
            if (p->offset + (off_t)p->length > final_size) final_size = p->offset + (off_t)p->length;
            continue;
        }
        else if (unsafe) f = FATE_DROP;
        else if (fixed_fate >= 0) f = fixed_fate;
        else f = (int)(next_random() % (tear ? 3 : 2));
        if (f == FATE_TEAR && sectors < 2) f = (next_random() & 1) ? FATE_KEEP : FATE_DROP;  /* a sector is atomic */
        fate[i] = f;
        if (f == FATE_TEAR) {
            masks[i] = calloc(sectors, 1);
            size_t on = 0;
            for (size_t s = 0; s < sectors; s++) on += masks[i][s] = (unsigned char)(next_random() & 1);
            if (on == 0) masks[i][0] = 1, on = 1;                      /* torn: some of it, */
            if (on == sectors) masks[i][sectors - 1] = 0, on--;        /* not all of it */
            sectors_kept += on;
            sectors_lost += sectors - on;
            torn++;
        } else if (f == FATE_KEEP) {
            kept++;
            sectors_kept += sectors;
        } else {
            dropped++;
            sectors_lost += sectors;
        }
    }
    /* Back to the durable state, newest first. */
    for (size_t i = npend; i-- > 0;)
        if (pend[i].length) (void)!pwrite(shadow, pend[i].old, pend[i].length, pend[i].offset);
    /* What reached the disk, oldest first. */
    for (size_t i = 0; i < npend; i++) {
        struct pending *p = &pend[i];
        if (fate[i] == FATE_KEEP && p->length) {
            (void)!pwrite(shadow, p->new, p->length, p->offset);
            if (p->offset + (off_t)p->length > final_size) final_size = p->offset + (off_t)p->length;
        } else if (fate[i] == FATE_TEAR) {
            off_t first = p->offset / SECTOR;
            for (off_t s = first; s * SECTOR < p->offset + (off_t)p->length; s++) {
                if (!masks[i][s - first]) continue;
                off_t from = s * SECTOR > p->offset ? s * SECTOR : p->offset;
                off_t to = (s + 1) * SECTOR < p->offset + (off_t)p->length ? (s + 1) * SECTOR : p->offset + (off_t)p->length;
                (void)!pwrite(shadow, p->new + (from - p->offset), (size_t)(to - from), from);
                if (to > final_size) final_size = to;
            }
        }
    }
    struct stat st;
    off_t size_before = fstat(shadow, &st) == 0 ? st.st_size : -1;
    if (size_before > final_size) (void)!ftruncate(shadow, final_size);
    char line[512];
    snprintf(line, sizeof line,
             "CUT point=%ld kind=%s pending=%zu bytes=%zu kept=%zu dropped=%zu torn=%zu durable=%zu sectors_kept=%zu sectors_lost=%zu size=%lld->%lld unsafe=%d\n",
             points, kind, npend - durable, bytes, kept, dropped, torn, durable, sectors_kept, sectors_lost,
             (long long)size_before, (long long)(size_before > final_size ? final_size : size_before), unsafe);
    say(report_path, line);
    for (size_t i = 0; detail_path[0] && i < npend; i++) {
        char head[128];
        static const char *names[] = {"keep", "drop", "tear"};
        snprintf(head, sizeof head, "%lld %zu %s%s", (long long)pend[i].offset, pend[i].length, names[fate[i]], pend[i].durable ? "-durable" : "");
        say(detail_path, head);
        if (fate[i] == FATE_TEAR) {
            off_t first = pend[i].offset / SECTOR, last = (pend[i].offset + (off_t)pend[i].length + SECTOR - 1) / SECTOR;
            char *mask = malloc((size_t)(last - first) + 3);
            mask[0] = ' ';
            for (off_t s = 0; s < last - first; s++) mask[s + 1] = masks[i][s] ? '1' : '0';
            mask[last - first + 1] = 0;
            say(detail_path, mask);
            free(mask);
        }
        say(detail_path, "\n");
    }
    syscall(SYS_kill, getpid(), SIGKILL);
    for (;;) pause();
}
