/*
 * A GM/T 0018-2012 (SDF) cipher-card simulator for the etrust test suite.
 *
 * Only the subset the SDF key backend uses, with the structure layout of the 2012 spec
 * (GmSSL sdf.h). ECCref_MAX_LEN is chosen at compile time (-DECCREF_MAX_LEN=32, default 64)
 * because vendors differ on it and the adapter must be told which one its library uses.
 * SM2 keys come from files (key<N>.pem, password<N>) in a provisioning folder; signing is
 * done by OpenSSL 3 on the 32-byte e = SM3(Z || M) the host computed, exactly like a card.
 *
 * Simulator-only entry points: SIM_Provision, SIM_BreakDevice, SIM_RepairDevice,
 * SIM_AccessRightAttempts. One global mutex makes every call atomic: good enough for one
 * session per thread. Never use this outside tests: passwords sit in plain files.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "sdf_sim.h"

#define MAX_KEYS 16
#define MAX_PASSWORD 64
#define MAX_HANDLES 128
#define DEFAULT_MAX_FAILURES 3

typedef struct {
    EVP_PKEY *pkey;
    unsigned char password[MAX_PASSWORD];
    size_t password_len;
    unsigned int failures;
    int locked;
    unsigned long attempts; /* GetPrivateKeyAccessRight calls, for tests */
} SimKey;

typedef struct {
    int is_session;
    void *device;            /* for sessions: the device handle they belong to */
    unsigned char rights[MAX_KEYS + 1];
} SimHandle;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static SimKey g_keys[MAX_KEYS + 1];
static SimHandle *g_handles[MAX_HANDLES];
static unsigned int g_max_failures = DEFAULT_MAX_FAILURES;
static int g_broken = 0; /* 0, or the SDR_* code every call returns while broken */
static int g_provisioned = 0;

static void clear_keys(void) {
    for (int i = 0; i <= MAX_KEYS; i++) {
        EVP_PKEY_free(g_keys[i].pkey);
        OPENSSL_cleanse(&g_keys[i], sizeof(g_keys[i]));
    }
}

/* A card reset: every open device and session handle becomes invalid. */
static void drop_handles(void) {
    for (int i = 0; i < MAX_HANDLES; i++) {
        free(g_handles[i]);
        g_handles[i] = NULL;
    }
}

static int add_handle(SimHandle *h) {
    for (int i = 0; i < MAX_HANDLES; i++) {
        if (g_handles[i] == NULL) {
            g_handles[i] = h;
            return 1;
        }
    }
    return 0;
}

static SimHandle *find_handle(void *p, int is_session) {
    if (p == NULL) return NULL;
    for (int i = 0; i < MAX_HANDLES; i++) {
        if (g_handles[i] == p && g_handles[i]->is_session == is_session) return g_handles[i];
    }
    return NULL;
}

static void remove_handle(SimHandle *h) {
    for (int i = 0; i < MAX_HANDLES; i++) {
        if (g_handles[i] == h) g_handles[i] = NULL;
    }
    free(h);
}

static int load_dir(const char *dir) {
    char path[4096];
    int loaded = 0;
    clear_keys();
    for (int i = 1; i <= MAX_KEYS; i++) {
        snprintf(path, sizeof(path), "%s/key%d.pem", dir, i);
        FILE *f = fopen(path, "r");
        if (f == NULL) continue;
        EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
        if (pkey == NULL || !EVP_PKEY_is_a(pkey, "SM2")) {
            EVP_PKEY_free(pkey);
            ERR_clear_error();
            continue;
        }
        snprintf(path, sizeof(path), "%s/password%d", dir, i);
        f = fopen(path, "rb");
        size_t n = 0;
        if (f != NULL) {
            n = fread(g_keys[i].password, 1, MAX_PASSWORD, f);
            fclose(f);
        }
        while (n > 0 && (g_keys[i].password[n - 1] == '\n' || g_keys[i].password[n - 1] == '\r'))
            n--;
        g_keys[i].password_len = n;
        g_keys[i].pkey = pkey;
        loaded++;
    }
    return loaded;
}

int SIM_Provision(const char *dir, unsigned int max_failures) {
    if (dir == NULL) return SDR_INARGERR;
    pthread_mutex_lock(&g_lock);
    drop_handles();
    int n = load_dir(dir);
    g_max_failures = max_failures ? max_failures : DEFAULT_MAX_FAILURES;
    g_provisioned = 1;
    g_broken = 0;
    pthread_mutex_unlock(&g_lock);
    return n > 0 ? SDR_OK : SDR_FILENOEXIST;
}

void SIM_BreakDevice(int code) {
    pthread_mutex_lock(&g_lock);
    g_broken = (code == SDR_HARDFAIL) ? SDR_HARDFAIL : SDR_COMMFAIL;
    drop_handles();
    pthread_mutex_unlock(&g_lock);
}

void SIM_RepairDevice(void) {
    pthread_mutex_lock(&g_lock);
    g_broken = 0;
    pthread_mutex_unlock(&g_lock);
}

unsigned long SIM_AccessRightAttempts(unsigned int index) {
    unsigned long n = 0;
    pthread_mutex_lock(&g_lock);
    if (index >= 1 && index <= MAX_KEYS) n = g_keys[index].attempts;
    pthread_mutex_unlock(&g_lock);
    return n;
}

/* Provision lazily from $SDFSIM_DIR, so the library also works without SIM_Provision. */
static void lazy_provision(void) {
    if (g_provisioned) return;
    const char *dir = getenv("SDFSIM_DIR");
    if (dir != NULL) load_dir(dir);
    g_provisioned = 1;
}

#define ENTER()                                  \
    pthread_mutex_lock(&g_lock);                 \
    lazy_provision();                            \
    if (g_broken) {                              \
        int rc_ = g_broken;                      \
        pthread_mutex_unlock(&g_lock);           \
        return rc_;                              \
    }

#define LEAVE(rc)                  \
    do {                           \
        int rc_ = (rc);            \
        pthread_mutex_unlock(&g_lock); \
        return rc_;                \
    } while (0)

#define SESSION(h, s)                          \
    SimHandle *s = find_handle((h), 1);        \
    if (s == NULL) LEAVE(SDR_OPENSESSION)

#define KEY_INDEX(i)                                                   \
    if ((i) < 1 || (i) > MAX_KEYS || g_keys[(i)].pkey == NULL) LEAVE(SDR_KEYNOTEXIST)

int SDF_OpenDevice(void **phDeviceHandle) {
    if (phDeviceHandle == NULL) return SDR_INARGERR;
    ENTER();
    SimHandle *h = calloc(1, sizeof(*h));
    if (h == NULL || !add_handle(h)) {
        free(h);
        LEAVE(SDR_OPENDEVICE);
    }
    *phDeviceHandle = h;
    LEAVE(SDR_OK);
}

int SDF_CloseDevice(void *hDeviceHandle) {
    ENTER();
    SimHandle *d = find_handle(hDeviceHandle, 0);
    if (d == NULL) LEAVE(SDR_OPENDEVICE);
    for (int i = 0; i < MAX_HANDLES; i++) {
        if (g_handles[i] != NULL && g_handles[i]->is_session && g_handles[i]->device == d) {
            free(g_handles[i]);
            g_handles[i] = NULL;
        }
    }
    remove_handle(d);
    LEAVE(SDR_OK);
}

int SDF_OpenSession(void *hDeviceHandle, void **phSessionHandle) {
    if (phSessionHandle == NULL) return SDR_INARGERR;
    ENTER();
    SimHandle *d = find_handle(hDeviceHandle, 0);
    if (d == NULL) LEAVE(SDR_OPENDEVICE);
    SimHandle *s = calloc(1, sizeof(*s));
    if (s == NULL) LEAVE(SDR_NOBUFFER);
    s->is_session = 1;
    s->device = d;
    if (!add_handle(s)) {
        free(s);
        LEAVE(SDR_OPENSESSION);
    }
    *phSessionHandle = s;
    LEAVE(SDR_OK);
}

int SDF_CloseSession(void *hSessionHandle) {
    ENTER();
    SESSION(hSessionHandle, s);
    remove_handle(s);
    LEAVE(SDR_OK);
}

int SDF_GetDeviceInfo(void *hSessionHandle, DEVICEINFO *pstDeviceInfo) {
    if (pstDeviceInfo == NULL) return SDR_OUTARGERR;
    ENTER();
    SESSION(hSessionHandle, s);
    (void)s;
    memset(pstDeviceInfo, 0, sizeof(*pstDeviceInfo));
    memcpy(pstDeviceInfo->IssuerName, "etrust test suite", 17);
    memcpy(pstDeviceInfo->DeviceName, "SDFSIM", 6);
    memcpy(pstDeviceInfo->DeviceSerial, "SIM0000000000001", 16); /* all 16 bytes, no NUL */
    pstDeviceInfo->DeviceVersion = 0x00010000;
    pstDeviceInfo->StandardVersion = 0x00010000;
    pstDeviceInfo->AsymAlgAbility[0] = SGD_SM2_1;
    pstDeviceInfo->AsymAlgAbility[1] = ECCREF_MAX_LEN * 8;
    pstDeviceInfo->SymAlgAbility = 0;
    pstDeviceInfo->HashAlgAbility = SGD_SM3;
    pstDeviceInfo->BufferSize = 4096;
    LEAVE(SDR_OK);
}

int SDF_GenerateRandom(void *hSessionHandle, unsigned int uiLength, unsigned char *pucRandom) {
    if (pucRandom == NULL || uiLength == 0 || uiLength > 65536) return SDR_INARGERR;
    ENTER();
    SESSION(hSessionHandle, s);
    (void)s;
    LEAVE(RAND_bytes(pucRandom, (int)uiLength) == 1 ? SDR_OK : SDR_RANDERR);
}

int SDF_GetPrivateKeyAccessRight(void *hSessionHandle, unsigned int uiKeyIndex,
                                 unsigned char *pucPassword, unsigned int uiPwdLength) {
    if (pucPassword == NULL && uiPwdLength != 0) return SDR_INARGERR;
    ENTER();
    SESSION(hSessionHandle, s);
    KEY_INDEX(uiKeyIndex);
    SimKey *k = &g_keys[uiKeyIndex];
    k->attempts++;
    if (k->locked) LEAVE(SDR_PRKRERR);
    int match = uiPwdLength == k->password_len &&
                (uiPwdLength == 0 || CRYPTO_memcmp(pucPassword, k->password, uiPwdLength) == 0);
    if (!match) {
        if (++k->failures >= g_max_failures) k->locked = 1;
        LEAVE(SDR_PARDENY);
    }
    k->failures = 0;
    s->rights[uiKeyIndex] = 1;
    LEAVE(SDR_OK);
}

int SDF_ReleasePrivateKeyAccessRight(void *hSessionHandle, unsigned int uiKeyIndex) {
    ENTER();
    SESSION(hSessionHandle, s);
    if (uiKeyIndex < 1 || uiKeyIndex > MAX_KEYS) LEAVE(SDR_KEYNOTEXIST);
    s->rights[uiKeyIndex] = 0;
    LEAVE(SDR_OK);
}

int SDF_ExportSignPublicKey_ECC(void *hSessionHandle, unsigned int uiKeyIndex,
                                ECCrefPublicKey *pucPublicKey) {
    if (pucPublicKey == NULL) return SDR_OUTARGERR;
    ENTER();
    SESSION(hSessionHandle, s);
    (void)s;
    KEY_INDEX(uiKeyIndex);
    unsigned char point[65];
    size_t len = 0;
    if (!EVP_PKEY_get_octet_string_param(g_keys[uiKeyIndex].pkey, OSSL_PKEY_PARAM_PUB_KEY,
                                         point, sizeof(point), &len) ||
        len != 65 || point[0] != 0x04) {
        ERR_clear_error();
        LEAVE(SDR_KEYERR);
    }
    memset(pucPublicKey, 0, sizeof(*pucPublicKey));
    pucPublicKey->bits = 256;
    memcpy(pucPublicKey->x + ECCREF_MAX_LEN - 32, point + 1, 32);
    memcpy(pucPublicKey->y + ECCREF_MAX_LEN - 32, point + 33, 32);
    LEAVE(SDR_OK);
}

/* OpenSSL 3's SM2 EVP_PKEY_sign signs its input as the digest e (no Z, no SM3). */
static int sign_e(EVP_PKEY *pkey, const unsigned char *e, ECCSignature *out) {
    int rc = SDR_SIGNERR;
    unsigned char der[80];
    size_t der_len = sizeof(der);
    ECDSA_SIG *sig = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pkey, NULL);
    if (ctx == NULL || EVP_PKEY_sign_init(ctx) != 1 ||
        EVP_PKEY_sign(ctx, der, &der_len, e, 32) != 1)
        goto done;
    const unsigned char *p = der;
    sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (sig == NULL) goto done;
    memset(out, 0, sizeof(*out));
    if (BN_bn2binpad(ECDSA_SIG_get0_r(sig), out->r + ECCREF_MAX_LEN - 32, 32) != 32 ||
        BN_bn2binpad(ECDSA_SIG_get0_s(sig), out->s + ECCREF_MAX_LEN - 32, 32) != 32)
        goto done;
    rc = SDR_OK;
done:
    ECDSA_SIG_free(sig);
    EVP_PKEY_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

int SDF_InternalSign_ECC(void *hSessionHandle, unsigned int uiISKIndex, unsigned char *pucData,
                         unsigned int uiDataLength, ECCSignature *pucSignature) {
    if (pucData == NULL || uiDataLength != 32) return SDR_INARGERR;
    if (pucSignature == NULL) return SDR_OUTARGERR;
    ENTER();
    SESSION(hSessionHandle, s);
    KEY_INDEX(uiISKIndex);
    if (!s->rights[uiISKIndex]) LEAVE(SDR_PARDENY);
    LEAVE(sign_e(g_keys[uiISKIndex].pkey, pucData, pucSignature));
}
