/*
 * A fake libnvidia-ml.so.1 for Orrery's tests: the NVML calls Orrery makes, with NVML's real
 * return semantics, over GPUs described in a text file named by $FAKE_NVML_STATE (read at
 * nvmlInit). Built by the test harness with `cc -shared -fPIC`.
 *
 * Semantics kept from the real library (nvml.h):
 *  - nvmlInit_v2 fails with NVML_ERROR_DRIVER_NOT_LOADED when there is no driver (no state file);
 *  - the process list probe (count 0, infos NULL) answers NVML_ERROR_INSUFFICIENT_SIZE with the
 *    count filled in when there are processes, SUCCESS when there are none;
 *  - MIG mode and MIG device counts are NVML_ERROR_NOT_SUPPORTED on GPUs without MIG; an empty
 *    MIG slot is NVML_ERROR_NOT_FOUND; utilization is NOT_SUPPORTED on MIG devices;
 *  - strings too long for the caller's buffer are NVML_ERROR_INSUFFICIENT_SIZE;
 *  - calls before nvmlInit are NVML_ERROR_UNINITIALIZED; nvmlShutdown exists (nvml-wrapper
 *    calls it when dropped).
 *
 * The state file, one item a line ('#' starts a comment):
 *   driver 550.54.15
 *   cuda 12040
 *   gpu  <uuid> <mem_total> <mem_used> <util_gpu> <util_mem> <mig: - | 0 | 1> <name…>
 *   mig  <parent gpu index> <slot> <uuid> <mem_total> <mem_used> <name…>
 *   proc <gpu or mig uuid> <host pid> <used memory bytes> [<sm utilization %>]
 *
 * A process given an SM utilization has one sample in nvmlDeviceGetProcessUtilization
 * (timestamped when the state was read); one without has none (NVML lists only processes
 * that ran since the caller's last-seen timestamp, and answers NOT_FOUND when none did).
 * MIG devices answer NOT_SUPPORTED there, as the real library does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int nvmlReturn_t;
#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_DRIVER_NOT_LOADED 9

#define MAX_DEVICES 64
#define MAX_PROCS 32

struct proc { unsigned int pid; unsigned long long mem; int sm; /* -1: no sample */ };

typedef struct nvmlDevice_st {
    int is_mig;
    int parent;      /* for MIG devices: the parent GPU's index */
    int slot;        /* for MIG devices: the slot index under the parent */
    char uuid[96];
    char name[96];
    unsigned long long total, used;
    unsigned int util_gpu, util_mem;
    int mig_mode;    /* -1: not supported, 0: off, 1: on */
    int nprocs;
    struct proc procs[MAX_PROCS];
} *nvmlDevice_t;

typedef struct { unsigned int version; unsigned long long total, reserved, free, used; } nvmlMemory_v2_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_t;

static struct nvmlDevice_st devices[MAX_DEVICES];
static int ndevices;
static int initialized;
static char driver[80] = "550.54.15";
static int cuda = 12040;

static struct nvmlDevice_st *find(const char *uuid) {
    for (int i = 0; i < ndevices; i++)
        if (strcmp(devices[i].uuid, uuid) == 0) return &devices[i];
    return NULL;
}

static void rest_of_line(char *dst, size_t size, const char *line, int skip_words) {
    const char *p = line;
    for (int w = 0; w < skip_words; w++) {
        while (*p == ' ' || *p == '\t') p++;
        while (*p && *p != ' ' && *p != '\t') p++;
    }
    while (*p == ' ' || *p == '\t') p++;
    snprintf(dst, size, "%s", p);
    size_t n = strlen(dst);
    while (n > 0 && (dst[n - 1] == '\n' || dst[n - 1] == '\r')) dst[--n] = 0;
}

static unsigned long long loaded_at_us;

static int load(void) {
    const char *path = getenv("FAKE_NVML_STATE");
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f) return 0;
    char line[512];
    ndevices = 0;
    while (fgets(line, sizeof line, f)) {
        char kind[16] = "";
        if (sscanf(line, "%15s", kind) != 1 || kind[0] == '#') continue;
        if (strcmp(kind, "driver") == 0) {
            sscanf(line, "%*s %79s", driver);
        } else if (strcmp(kind, "cuda") == 0) {
            sscanf(line, "%*s %d", &cuda);
        } else if (strcmp(kind, "gpu") == 0 && ndevices < MAX_DEVICES) {
            struct nvmlDevice_st *d = &devices[ndevices];
            char mig[8];
            memset(d, 0, sizeof *d);
            if (sscanf(line, "%*s %95s %llu %llu %u %u %7s", d->uuid, &d->total, &d->used,
                       &d->util_gpu, &d->util_mem, mig) != 6) continue;
            d->mig_mode = strcmp(mig, "-") == 0 ? -1 : atoi(mig);
            rest_of_line(d->name, sizeof d->name, line, 7);
            ndevices++;
        } else if (strcmp(kind, "mig") == 0 && ndevices < MAX_DEVICES) {
            struct nvmlDevice_st *d = &devices[ndevices];
            memset(d, 0, sizeof *d);
            d->is_mig = 1;
            if (sscanf(line, "%*s %d %d %95s %llu %llu", &d->parent, &d->slot, d->uuid, &d->total,
                       &d->used) != 5) continue;
            rest_of_line(d->name, sizeof d->name, line, 6);
            ndevices++;
        } else if (strcmp(kind, "proc") == 0) {
            char uuid[96];
            unsigned int pid;
            unsigned long long mem;
            int sm = -1;
            if (sscanf(line, "%*s %95s %u %llu %d", uuid, &pid, &mem, &sm) < 3) continue;
            struct nvmlDevice_st *d = find(uuid);
            if (d && d->nprocs < MAX_PROCS) {
                d->procs[d->nprocs].pid = pid;
                d->procs[d->nprocs].mem = mem;
                d->procs[d->nprocs].sm = sm;
                d->nprocs++;
            }
        }
    }
    fclose(f);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    loaded_at_us = (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000ull;
    return 1;
}

/* The index-th whole GPU (MIG devices are not counted). */
static struct nvmlDevice_st *gpu_at(unsigned int index) {
    unsigned int seen = 0;
    for (int i = 0; i < ndevices; i++) {
        if (devices[i].is_mig) continue;
        if (seen++ == index) return &devices[i];
    }
    return NULL;
}

static int index_of(struct nvmlDevice_st *d) {
    int seen = 0;
    for (int i = 0; i < ndevices; i++) {
        if (devices[i].is_mig) continue;
        if (&devices[i] == d) return seen;
        seen++;
    }
    return -1;
}

static nvmlReturn_t copy_string(char *dst, unsigned int length, const char *src) {
    if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(dst, src);
    return NVML_SUCCESS;
}

#define REQUIRE_INIT() do { if (!initialized) return NVML_ERROR_UNINITIALIZED; } while (0)
#define REQUIRE_DEVICE(d) do { REQUIRE_INIT(); if (!(d)) return NVML_ERROR_INVALID_ARGUMENT; } while (0)

nvmlReturn_t nvmlInit_v2(void) {
    if (!load()) return NVML_ERROR_DRIVER_NOT_LOADED;
    initialized = 1;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlInit(void) { return nvmlInit_v2(); }

nvmlReturn_t nvmlShutdown(void) {
    REQUIRE_INIT();
    initialized = 0;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    REQUIRE_INIT();
    return copy_string(version, length, driver);
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *version) {
    if (!version) return NVML_ERROR_INVALID_ARGUMENT;
    *version = cuda;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *version) {
    return nvmlSystemGetCudaDriverVersion_v2(version);
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    REQUIRE_INIT();
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned int n = 0;
    for (int i = 0; i < ndevices; i++)
        if (!devices[i].is_mig) n++;
    *count = n;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    REQUIRE_INIT();
    struct nvmlDevice_st *d = gpu_at(index);
    if (!d || !device) return NVML_ERROR_INVALID_ARGUMENT;
    *device = d;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index) {
    REQUIRE_DEVICE(device);
    if (!index) return NVML_ERROR_INVALID_ARGUMENT;
    if (device->is_mig) return NVML_ERROR_NOT_SUPPORTED;
    *index = (unsigned int)index_of(device);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    REQUIRE_DEVICE(device);
    return copy_string(uuid, length, device->uuid);
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    REQUIRE_DEVICE(device);
    return copy_string(name, length, device->name);
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) {
    REQUIRE_DEVICE(device);
    if (!memory) return NVML_ERROR_INVALID_ARGUMENT;
    /* NVML_STRUCT_VERSION(Memory, 2): the caller must say which layout it passes. */
    if (memory->version != (unsigned int)(sizeof(nvmlMemory_v2_t) | (2u << 24)))
        return NVML_ERROR_INVALID_ARGUMENT;
    memory->total = device->total;
    memory->used = device->used;
    memory->reserved = 0;
    memory->free = device->total > device->used ? device->total - device->used : 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization) {
    REQUIRE_DEVICE(device);
    if (!utilization) return NVML_ERROR_INVALID_ARGUMENT;
    if (device->is_mig) return NVML_ERROR_NOT_SUPPORTED;
    utilization->gpu = device->util_gpu;
    utilization->memory = device->util_mem;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *count,
                                                     nvmlProcessInfo_t *infos) {
    REQUIRE_DEVICE(device);
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned int have = (unsigned int)device->nprocs;
    if (have == 0) {
        *count = 0;
        return NVML_SUCCESS;
    }
    if (!infos || *count < have) {
        *count = have;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (unsigned int i = 0; i < have; i++) {
        infos[i].pid = device->procs[i].pid;
        infos[i].usedGpuMemory = device->procs[i].mem;
        infos[i].gpuInstanceId = device->is_mig ? (unsigned int)device->slot : 0xFFFFFFFFu;
        infos[i].computeInstanceId = device->is_mig ? 0 : 0xFFFFFFFFu;
    }
    *count = have;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *current, unsigned int *pending) {
    REQUIRE_DEVICE(device);
    if (!current || !pending) return NVML_ERROR_INVALID_ARGUMENT;
    if (device->is_mig || device->mig_mode < 0) return NVML_ERROR_NOT_SUPPORTED;
    *current = *pending = (unsigned int)device->mig_mode;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count) {
    REQUIRE_DEVICE(device);
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    if (device->is_mig || device->mig_mode < 0) return NVML_ERROR_NOT_SUPPORTED;
    *count = 7;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index,
                                                 nvmlDevice_t *mig) {
    REQUIRE_DEVICE(device);
    if (!mig) return NVML_ERROR_INVALID_ARGUMENT;
    if (device->is_mig || device->mig_mode < 0) return NVML_ERROR_NOT_SUPPORTED;
    int parent = index_of(device);
    for (int i = 0; i < ndevices; i++) {
        if (devices[i].is_mig && devices[i].parent == parent && devices[i].slot == (int)index) {
            *mig = &devices[i];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device, unsigned int *is_mig) {
    REQUIRE_DEVICE(device);
    if (!is_mig) return NVML_ERROR_INVALID_ARGUMENT;
    *is_mig = (unsigned int)device->is_mig;
    return NVML_SUCCESS;
}

typedef struct {
    unsigned int pid;
    unsigned long long timeStamp;
    unsigned int smUtil, memUtil, encUtil, decUtil;
} nvmlProcessUtilizationSample_t;

nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t device,
                                             nvmlProcessUtilizationSample_t *utilization,
                                             unsigned int *processSamplesCount,
                                             unsigned long long lastSeenTimeStamp) {
    REQUIRE_DEVICE(device);
    if (!processSamplesCount) return NVML_ERROR_INVALID_ARGUMENT;
    if (device->is_mig) return NVML_ERROR_NOT_SUPPORTED;
    unsigned int have = 0;
    for (int i = 0; i < device->nprocs; i++)
        if (device->procs[i].sm >= 0 && loaded_at_us > lastSeenTimeStamp) have++;
    if (have == 0) return NVML_ERROR_NOT_FOUND;
    if (!utilization || *processSamplesCount < have) {
        *processSamplesCount = have;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    unsigned int n = 0;
    for (int i = 0; i < device->nprocs; i++) {
        if (device->procs[i].sm < 0 || loaded_at_us <= lastSeenTimeStamp) continue;
        utilization[n].pid = device->procs[i].pid;
        utilization[n].timeStamp = loaded_at_us;
        utilization[n].smUtil = (unsigned int)device->procs[i].sm;
        utilization[n].memUtil = 0;
        utilization[n].encUtil = utilization[n].decUtil = 0;
        n++;
    }
    *processSamplesCount = n;
    return NVML_SUCCESS;
}
