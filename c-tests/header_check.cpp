// Compile check of unilock.h as C++11 (-Wall -Wextra -Werror -pedantic and more): includes the header
// alone, first, and uses its types, macros and functions from C++.
#include <unilock.h>
#include <unilock.h> // the include guard works

#include <cstdio>
#include <type_traits>

static_assert(std::is_same<std::underlying_type<unilock_status>::type, uint32_t>::value,
              "unilock_status is a uint32_t enum in C++");
static_assert(sizeof(unilock_status) == sizeof(uint32_t), "unilock_status is 32 bits");
static_assert(std::is_standard_layout<unilock_lock_info>::value, "unilock_lock_info is a C struct");
static_assert(sizeof(unilock_lock_info{}.client) == UNILOCK_CLIENT_MAX + 1, "client buffer holds the NUL");
static_assert(sizeof(unilock_lock_info{}.owner) == UNILOCK_OWNER_MAX, "owner buffer holds the largest owner");

extern "C" {
static int32_t visit(void *, const unilock_lock_info *lock) { return lock->type == UNILOCK_EXCLUSIVE; }
static void log_fn(void *, uint32_t, const char *) {}
}

int main()
{
    unilock_config cfg;
    unilock *ul = nullptr;
    unilock_config_init(&cfg);
    unilock_status s = unilock_set_log(log_fn, nullptr, UNILOCK_LOG_OFF);
    if (s != UNILOCK_OK || unilock_open(&cfg, &ul) != UNILOCK_OK)
        return 1;
    uint8_t fid[UNILOCK_FILE_ID_CANONICAL_LEN];
    unilock_file_id_make(1, 2, 3, fid);
    unilock_owner o = {"hdr++", nullptr, 0, 1};
    unilock_lock_req req = {UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, UNILOCK_TO_EOF, 0};
    unilock_lock_info info;
    size_t n = 0, idx = 0;
    int bad = 0;
    bad |= unilock_lock(ul, fid, sizeof fid, &o, &req, &info) != UNILOCK_OK;
    bad |= unilock_test(ul, fid, sizeof fid, &o, &req, nullptr) != UNILOCK_OK;
    bad |= unilock_lock_many(ul, fid, sizeof fid, &o, &req, 1, &idx, &info) != UNILOCK_OK;
    bad |= unilock_check_io(ul, fid, sizeof fid, &o, UNILOCK_WRITE, 0, 1) != UNILOCK_OK;
    bad |= unilock_list_locks(ul, fid, sizeof fid, visit, nullptr, &n) != UNILOCK_OK;
    bad |= unilock_unlock(ul, fid, sizeof fid, &o, UNILOCK_POSIX, 0, UNILOCK_TO_EOF) != UNILOCK_OK;
    bad |= unilock_unlock_many(ul, fid, sizeof fid, &o, &req, 1, &idx) != UNILOCK_OK;
    bad |= unilock_release_open(ul, fid, sizeof fid, &o, &n) != UNILOCK_OK;
    bad |= unilock_release_client(ul, "hdr++", &n) != UNILOCK_OK;
    unilock_close(ul);
    std::printf("header C++ check: %s %d (lib %s %d), %s\n", UNILOCK_VERSION, UNILOCK_VERSION_NUMBER,
                unilock_libversion(), static_cast<int>(unilock_libversion_number()),
                unilock_strerror(UNILOCK_E_CONFLICT));
    return bad;
}
