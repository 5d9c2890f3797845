/* A small GM/T 0016 (SKF) USB-key simulator for the etrust tests, backed by OpenSSL 3.
 *
 * State comes from a directory tree (see README.md): DIR/<device>/<application>/<container>/
 * with user.pin, max_retries, sign.key.pem and sign.cert.der. Handles are small table indices
 * (never raw pointers), so a stale or forged handle gives SAR_INVALIDHANDLEERR, not a crash.
 * Every buffer is bounds-checked: too small gives SAR_BUFFER_TOO_SMALL and the size needed.
 */
#define _GNU_SOURCE
#include "skf_sim.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#define NAMELEN 64
#define MAX_DEV 4
#define MAX_APP 4
#define MAX_CON 16
#define MAX_HANDLES 256
#define MAX_CERT 65536
#define HANDLE_BASE ((uintptr_t)0x5C1000)
#define DEFAULT_RETRIES 6

typedef struct {
    char name[NAMELEN];
    EVP_PKEY *key;
    unsigned char *cert;
    size_t cert_len;
    ULONG type;
} Container;

typedef struct {
    char name[NAMELEN];
    char pin[NAMELEN];
    ULONG max_retries;
    ULONG retries; /* survives removal, like the counter in a real key's EEPROM */
    int logged_in;
    Container con[MAX_CON];
    int ncon;
} App;

typedef struct {
    char name[NAMELEN];
    int present;
    unsigned gen; /* bumped on removal: handles of an older generation are stale */
    App app[MAX_APP];
    int napp;
} Device;

enum { H_FREE = 0, H_DEV, H_APP, H_CON };

typedef struct {
    int kind;
    int dev, app, con;
    unsigned gen;
} Handle;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static Device g_dev[MAX_DEV];
static int g_ndev;
static int g_loaded;
static Handle g_h[MAX_HANDLES];

/* ---------------------------------------------------------------- provisioning */

static int no_password(char *buf, int size, int rwflag, void *u) {
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0; /* never prompt on a terminal for an encrypted PEM */
}

/* dir + "/" + name into out; 0 on success, -1 if it would not fit. */
static int join(char *out, size_t max, const char *dir, const char *name) {
    int n = snprintf(out, max, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= max ? -1 : 0;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp((const char *)a, (const char *)b);
}

/* Sorted names of the sub-directories of `path` (at most `max`); -1 on error. */
static int list_dirs(const char *path, char (*names)[NAMELEN], int max) {
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strlen(e->d_name) >= NAMELEN) continue;
        char full[4096];
        struct stat st;
        if (join(full, sizeof full, path, e->d_name) != 0) continue;
        if (stat(full, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        if (n == max) break;
        memcpy(names[n++], e->d_name, strlen(e->d_name) + 1);
    }
    closedir(d);
    qsort(names, (size_t)n, NAMELEN, cmp_names);
    return n;
}

/* Reads a whole small file; returns its length or -1. */
static long read_file(const char *path, unsigned char *buf, size_t max) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t n = fread(buf, 1, max, f);
    int more = fgetc(f) != EOF;
    fclose(f);
    return more ? -1 : (long)n;
}

static int read_line(const char *path, char *out, size_t max) {
    unsigned char buf[NAMELEN];
    long n = read_file(path, buf, sizeof buf - 1);
    if (n < 0) return -1;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
    if ((size_t)n >= max) return -1;
    memcpy(out, buf, (size_t)n);
    out[n] = 0;
    return 0;
}

static int load_container(const char *path, Container *c) {
    char file[4096];
    if (join(file, sizeof file, path, "sign.key.pem") != 0) return -1;
    BIO *bio = BIO_new_file(file, "r");
    if (!bio) goto fail;
    c->key = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL);
    BIO_free(bio);
    if (!c->key) goto fail;
    if (EVP_PKEY_is_a(c->key, "SM2")) {
        c->type = CONTAINER_ECC;
    } else if (EVP_PKEY_is_a(c->key, "RSA") && EVP_PKEY_get_bits(c->key) <= 2048) {
        c->type = CONTAINER_RSA; /* RSAPUBLICKEYBLOB holds at most 2048-bit moduli */
    } else {
        fprintf(stderr, "skfsim: %s: only SM2 and RSA up to 2048 bits are supported\n", file);
        return -1;
    }
    if (join(file, sizeof file, path, "sign.cert.der") != 0) return -1;
    unsigned char *buf = malloc(MAX_CERT);
    if (!buf) return -1;
    long n = read_file(file, buf, MAX_CERT);
    if (n > 0) {
        c->cert = buf;
        c->cert_len = (size_t)n;
    } else {
        free(buf); /* a container without a certificate is allowed */
    }
    return 0;
fail:
    ERR_clear_error();
    fprintf(stderr, "skfsim: cannot read the private key %s\n", file);
    return -1;
}

void SIM_Reset(void) {
    pthread_mutex_lock(&g_lock);
    for (int d = 0; d < g_ndev; d++)
        for (int a = 0; a < g_dev[d].napp; a++)
            for (int c = 0; c < g_dev[d].app[a].ncon; c++) {
                EVP_PKEY_free(g_dev[d].app[a].con[c].key);
                free(g_dev[d].app[a].con[c].cert);
            }
    memset(g_dev, 0, sizeof g_dev);
    memset(g_h, 0, sizeof g_h);
    g_ndev = 0;
    g_loaded = 0;
    pthread_mutex_unlock(&g_lock);
}

static ULONG provision_locked(const char *dir) {
    char names[MAX_DEV][NAMELEN], apps[MAX_APP][NAMELEN], cons[MAX_CON][NAMELEN];
    char path[4096], file[4096];
    int nd = list_dirs(dir, names, MAX_DEV);
    if (nd < 0) return SAR_FAIL;
    for (int d = 0; d < nd; d++) {
        Device *dev = &g_dev[g_ndev++];
        memcpy(dev->name, names[d], NAMELEN);
        dev->present = 1;
        if (join(path, sizeof path, dir, dev->name) != 0) return SAR_FAIL;
        int na = list_dirs(path, apps, MAX_APP);
        for (int a = 0; a < na; a++) {
            App *app = &dev->app[dev->napp++];
            memcpy(app->name, apps[a], NAMELEN);
            char dev_path[4096];
            if (join(dev_path, sizeof dev_path, dir, dev->name) != 0 ||
                join(path, sizeof path, dev_path, app->name) != 0)
                return SAR_FAIL;
            if (join(file, sizeof file, path, "user.pin") != 0 ||
                read_line(file, app->pin, NAMELEN) != 0) {
                fprintf(stderr, "skfsim: %s is missing or too long\n", file);
                return SAR_FAIL;
            }
            char text[NAMELEN];
            app->max_retries = DEFAULT_RETRIES;
            if (join(file, sizeof file, path, "max_retries") == 0 &&
                read_line(file, text, sizeof text) == 0) {
                long v = strtol(text, NULL, 10);
                if (v < 1 || v > 15) return SAR_FAIL;
                app->max_retries = (ULONG)v;
            }
            app->retries = app->max_retries;
            int nc = list_dirs(path, cons, MAX_CON);
            for (int c = 0; c < nc; c++) {
                Container *con = &app->con[app->ncon++];
                memcpy(con->name, cons[c], NAMELEN);
                char cpath[4096];
                if (join(cpath, sizeof cpath, path, con->name) != 0 ||
                    load_container(cpath, con) != 0) return SAR_FAIL;
            }
        }
    }
    g_loaded = 1;
    return SAR_OK;
}

/* Loads the device tree under `dir`, replacing all state (keys, PIN counters, handles). */
ULONG SIM_Provision(const char *dir) {
    if (!dir) return SAR_INVALIDPARAMERR;
    SIM_Reset();
    pthread_mutex_lock(&g_lock);
    ULONG rv = provision_locked(dir);
    pthread_mutex_unlock(&g_lock);
    if (rv != SAR_OK) SIM_Reset();
    return rv;
}

static void ensure_loaded(void) {
    const char *dir = getenv("SKFSIM_DIR");
    if (!g_loaded && dir) provision_locked(dir);
}

static Device *device_named(const char *name) {
    for (int d = 0; d < g_ndev; d++)
        if (name && strcmp(g_dev[d].name, name) == 0) return &g_dev[d];
    return NULL;
}

/* Pulls the key: open handles on it go stale and its security state is lost. */
ULONG SIM_RemoveDevice(const char *name) {
    pthread_mutex_lock(&g_lock);
    Device *dev = device_named(name);
    if (dev) {
        dev->present = 0;
        dev->gen++;
        for (int a = 0; a < dev->napp; a++) dev->app[a].logged_in = 0;
    }
    pthread_mutex_unlock(&g_lock);
    return dev ? SAR_OK : SAR_INVALIDPARAMERR;
}

ULONG SIM_InsertDevice(const char *name) {
    pthread_mutex_lock(&g_lock);
    Device *dev = device_named(name);
    if (dev) dev->present = 1;
    pthread_mutex_unlock(&g_lock);
    return dev ? SAR_OK : SAR_INVALIDPARAMERR;
}

/* Handles not yet closed: lets the tests check that the adapter releases what it opens. */
ULONG SIM_OpenHandleCount(void) {
    pthread_mutex_lock(&g_lock);
    ULONG n = 0;
    for (int i = 0; i < MAX_HANDLES; i++) n += g_h[i].kind != H_FREE;
    pthread_mutex_unlock(&g_lock);
    return n;
}

ULONG SIM_UlongBits(void) { return (ULONG)(sizeof(ULONG) * 8); }

/* ---------------------------------------------------------------- handles */

static void *new_handle(int kind, int dev, int app, int con) {
    for (int i = 0; i < MAX_HANDLES; i++) {
        if (g_h[i].kind == H_FREE) {
            g_h[i] = (Handle){kind, dev, app, con, g_dev[dev].gen};
            return (void *)(HANDLE_BASE + (uintptr_t)i);
        }
    }
    return NULL;
}

static Handle *raw_handle(void *h, int kind) {
    uintptr_t v = (uintptr_t)h;
    if (v < HANDLE_BASE || v >= HANDLE_BASE + MAX_HANDLES) return NULL;
    Handle *p = &g_h[v - HANDLE_BASE];
    return p->kind == kind ? p : NULL;
}

static ULONG lookup(void *h, int kind, Handle **out) {
    Handle *p = raw_handle(h, kind);
    if (!p) return SAR_INVALIDHANDLEERR;
    Device *d = &g_dev[p->dev];
    if (!d->present || d->gen != p->gen) return SAR_DEVICE_REMOVED;
    *out = p;
    return SAR_OK;
}

static ULONG close_handle(void *h, int kind) {
    Handle *p = raw_handle(h, kind);
    if (!p) return SAR_INVALIDHANDLEERR;
    Device *d = &g_dev[p->dev];
    ULONG rv = (!d->present || d->gen != p->gen) ? SAR_DEVICE_REMOVED : SAR_OK;
    memset(p, 0, sizeof *p); /* stale handles are released too, so nothing leaks */
    return rv;
}

#define APP_OF(p) (&g_dev[(p)->dev].app[(p)->app])
#define CON_OF(p) (&g_dev[(p)->dev].app[(p)->app].con[(p)->con])

/* Copies a multi-string (NUL-separated, double-NUL-terminated) out, with the size protocol. */
static ULONG put_multi(const char *first, size_t stride, int n, LPSTR out, ULONG *pulSize) {
    if (!pulSize) return SAR_INVALIDPARAMERR;
    size_t need = 1;
    for (int i = 0; i < n; i++) need += strlen(first + i * stride) + 1;
    if (n == 0) need = 2;
    if (!out) {
        *pulSize = (ULONG)need;
        return SAR_OK;
    }
    if (*pulSize < need) {
        *pulSize = (ULONG)need;
        return SAR_BUFFER_TOO_SMALL;
    }
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(first + i * stride) + 1;
        memcpy(out + at, first + i * stride, len);
        at += len;
    }
    memset(out + at, 0, need - at);
    *pulSize = (ULONG)need;
    return SAR_OK;
}

static ULONG put_bytes(const unsigned char *src, size_t len, BYTE *out, ULONG *pulLen) {
    if (!pulLen) return SAR_INVALIDPARAMERR;
    if (out && *pulLen < len) {
        *pulLen = (ULONG)len;
        return SAR_BUFFER_TOO_SMALL;
    }
    if (out) memcpy(out, src, len);
    *pulLen = (ULONG)len;
    return SAR_OK;
}

#define ENTER()                    \
    pthread_mutex_lock(&g_lock);   \
    ensure_loaded();               \
    ULONG rv = SAR_OK;             \
    Handle *hp = NULL;             \
    (void)hp
#define LEAVE()                    \
    out:                           \
    pthread_mutex_unlock(&g_lock); \
    return rv
#define CHECK(expr)                      \
    do {                                 \
        if ((rv = (expr)) != SAR_OK) goto out; \
    } while (0)
#define FAIL(code)   \
    do {             \
        rv = (code); \
        goto out;    \
    } while (0)

/* ---------------------------------------------------------------- device */

ULONG DEVAPI SKF_EnumDev(BOOL bPresent, LPSTR szNameList, ULONG *pulSize) {
    ENTER();
    char names[MAX_DEV][NAMELEN];
    int n = 0;
    for (int d = 0; d < g_ndev; d++)
        if (!bPresent || g_dev[d].present) memcpy(names[n++], g_dev[d].name, NAMELEN);
    rv = put_multi(names[0], NAMELEN, n, szNameList, pulSize);
    goto out;
    LEAVE();
}

ULONG DEVAPI SKF_ConnectDev(LPSTR szName, DEVHANDLE *phDev) {
    ENTER();
    if (!szName || !phDev) FAIL(SAR_INVALIDPARAMERR);
    Device *dev = device_named(szName);
    if (!dev) FAIL(SAR_FAIL);
    if (!dev->present) FAIL(SAR_DEVICE_REMOVED);
    *phDev = new_handle(H_DEV, (int)(dev - g_dev), -1, -1);
    if (!*phDev) FAIL(SAR_MEMORYERR);
    LEAVE();
}

ULONG DEVAPI SKF_DisConnectDev(DEVHANDLE hDev) {
    ENTER();
    rv = close_handle(hDev, H_DEV);
    goto out;
    LEAVE();
}

ULONG DEVAPI SKF_GetDevInfo(DEVHANDLE hDev, DEVINFO *pDevInfo) {
    ENTER();
    CHECK(lookup(hDev, H_DEV, &hp));
    if (!pDevInfo) FAIL(SAR_INVALIDPARAMERR);
    memset(pDevInfo, 0, sizeof *pDevInfo);
    pDevInfo->Version = (VERSION){1, 0};
    snprintf(pDevInfo->Manufacturer, sizeof pDevInfo->Manufacturer, "etrust skfsim");
    snprintf(pDevInfo->Issuer, sizeof pDevInfo->Issuer, "etrust tests");
    snprintf(pDevInfo->Label, sizeof pDevInfo->Label, "%.31s", g_dev[hp->dev].name);
    snprintf(pDevInfo->SerialNumber, sizeof pDevInfo->SerialNumber, "SIM%04d", hp->dev);
    pDevInfo->HWVersion = (VERSION){1, 0};
    pDevInfo->FirmwareVersion = (VERSION){1, 0};
    pDevInfo->AlgAsymCap = SGD_SM2_1 | SGD_RSA;
    pDevInfo->AlgHashCap = SGD_SM3 | SGD_SHA256;
    pDevInfo->TotalSpace = 65536;
    pDevInfo->FreeSpace = 32768;
    pDevInfo->MaxECCBufferSize = 1024;
    pDevInfo->MaxBufferSize = 1024;
    LEAVE();
}

ULONG DEVAPI SKF_GenRandom(DEVHANDLE hDev, BYTE *pbRandom, ULONG ulRandomLen) {
    ENTER();
    CHECK(lookup(hDev, H_DEV, &hp));
    if (!pbRandom || ulRandomLen == 0 || ulRandomLen > 4096) FAIL(SAR_INVALIDPARAMERR);
    if (RAND_bytes(pbRandom, (int)ulRandomLen) != 1) FAIL(SAR_GENRANDERR);
    LEAVE();
}

/* ---------------------------------------------------------------- application and PIN */

ULONG DEVAPI SKF_EnumApplication(DEVHANDLE hDev, LPSTR szAppName, ULONG *pulSize) {
    ENTER();
    CHECK(lookup(hDev, H_DEV, &hp));
    Device *dev = &g_dev[hp->dev];
    rv = put_multi(dev->app[0].name, sizeof(App), dev->napp, szAppName, pulSize);
    LEAVE();
}

ULONG DEVAPI SKF_OpenApplication(DEVHANDLE hDev, LPSTR szAppName, HAPPLICATION *phApplication) {
    ENTER();
    CHECK(lookup(hDev, H_DEV, &hp));
    if (!szAppName || !phApplication) FAIL(SAR_INVALIDPARAMERR);
    Device *dev = &g_dev[hp->dev];
    for (int a = 0; a < dev->napp; a++) {
        if (strcmp(dev->app[a].name, szAppName) == 0) {
            *phApplication = new_handle(H_APP, hp->dev, a, -1);
            if (!*phApplication) FAIL(SAR_MEMORYERR);
            goto out;
        }
    }
    FAIL(SAR_APPLICATION_NOT_EXISTS);
    LEAVE();
}

ULONG DEVAPI SKF_CloseApplication(HAPPLICATION hApplication) {
    ENTER();
    rv = close_handle(hApplication, H_APP);
    goto out;
    LEAVE();
}

ULONG DEVAPI SKF_VerifyPIN(HAPPLICATION hApplication, ULONG ulPINType, LPSTR szPIN,
                           ULONG *pulRetryCount) {
    ENTER();
    CHECK(lookup(hApplication, H_APP, &hp));
    if (ulPINType == ADMIN_TYPE) FAIL(SAR_NOTSUPPORTYETERR);
    if (ulPINType != USER_TYPE) FAIL(SAR_USER_TYPE_INVALID);
    if (!szPIN || !pulRetryCount) FAIL(SAR_INVALIDPARAMERR);
    App *app = APP_OF(hp);
    size_t len = strnlen(szPIN, NAMELEN);
    if (len == 0 || len >= NAMELEN) FAIL(SAR_PIN_LEN_RANGE);
    if (app->retries == 0) {
        *pulRetryCount = 0;
        FAIL(SAR_PIN_LOCKED);
    }
    if (strcmp(szPIN, app->pin) != 0) {
        app->retries--;
        app->logged_in = 0;
        *pulRetryCount = app->retries;
        FAIL(app->retries == 0 ? SAR_PIN_LOCKED : SAR_PIN_INCORRECT);
    }
    app->retries = app->max_retries;
    app->logged_in = 1;
    *pulRetryCount = app->retries;
    LEAVE();
}

ULONG DEVAPI SKF_GetPINInfo(HAPPLICATION hApplication, ULONG ulPINType, ULONG *pulMaxRetryCount,
                            ULONG *pulRemainRetryCount, BOOL *pbDefaultPin) {
    ENTER();
    CHECK(lookup(hApplication, H_APP, &hp));
    if (ulPINType != USER_TYPE) FAIL(SAR_USER_TYPE_INVALID);
    if (!pulMaxRetryCount || !pulRemainRetryCount || !pbDefaultPin) FAIL(SAR_INVALIDPARAMERR);
    App *app = APP_OF(hp);
    *pulMaxRetryCount = app->max_retries;
    *pulRemainRetryCount = app->retries;
    *pbDefaultPin = strcmp(app->pin, "123456") == 0; /* a common factory default */
    LEAVE();
}

ULONG DEVAPI SKF_ClearSecureState(HAPPLICATION hApplication) {
    ENTER();
    CHECK(lookup(hApplication, H_APP, &hp));
    APP_OF(hp)->logged_in = 0;
    LEAVE();
}

/* ---------------------------------------------------------------- containers */

ULONG DEVAPI SKF_EnumContainer(HAPPLICATION hApplication, LPSTR szContainerName, ULONG *pulSize) {
    ENTER();
    CHECK(lookup(hApplication, H_APP, &hp));
    App *app = APP_OF(hp);
    rv = put_multi(app->con[0].name, sizeof(Container), app->ncon, szContainerName, pulSize);
    LEAVE();
}

ULONG DEVAPI SKF_OpenContainer(HAPPLICATION hApplication, LPSTR szContainerName,
                               HCONTAINER *phContainer) {
    ENTER();
    CHECK(lookup(hApplication, H_APP, &hp));
    if (!szContainerName || !phContainer) FAIL(SAR_INVALIDPARAMERR);
    App *app = APP_OF(hp);
    for (int c = 0; c < app->ncon; c++) {
        if (strcmp(app->con[c].name, szContainerName) == 0) {
            *phContainer = new_handle(H_CON, hp->dev, hp->app, c);
            if (!*phContainer) FAIL(SAR_MEMORYERR);
            goto out;
        }
    }
    FAIL(SAR_FILE_NOT_EXIST);
    LEAVE();
}

ULONG DEVAPI SKF_CloseContainer(HCONTAINER hContainer) {
    ENTER();
    rv = close_handle(hContainer, H_CON);
    goto out;
    LEAVE();
}

ULONG DEVAPI SKF_GetContainerType(HCONTAINER hContainer, ULONG *pulContainerType) {
    ENTER();
    CHECK(lookup(hContainer, H_CON, &hp));
    if (!pulContainerType) FAIL(SAR_INVALIDPARAMERR);
    *pulContainerType = CON_OF(hp)->type;
    LEAVE();
}

ULONG DEVAPI SKF_ExportCertificate(HCONTAINER hContainer, BOOL bSignFlag, BYTE *pbCert,
                                   ULONG *pulCertLen) {
    ENTER();
    CHECK(lookup(hContainer, H_CON, &hp));
    Container *con = CON_OF(hp);
    if (!bSignFlag || !con->cert) FAIL(SAR_CERTNOTFOUNTERR); /* no encryption pair here */
    rv = put_bytes(con->cert, con->cert_len, pbCert, pulCertLen);
    LEAVE();
}

static int bn_param(EVP_PKEY *key, const char *name, BYTE *out, int width) {
    BIGNUM *bn = NULL;
    int ok = EVP_PKEY_get_bn_param(key, name, &bn) == 1 && BN_bn2binpad(bn, out, width) == width;
    BN_free(bn);
    ERR_clear_error();
    return ok;
}

ULONG DEVAPI SKF_ExportPublicKey(HCONTAINER hContainer, BOOL bSignFlag, BYTE *pbBlob,
                                 ULONG *pulBlobLen) {
    ENTER();
    CHECK(lookup(hContainer, H_CON, &hp));
    Container *con = CON_OF(hp);
    if (!bSignFlag) FAIL(SAR_KEYNOTFOUNTERR);
    if (con->type == CONTAINER_ECC) {
        ECCPUBLICKEYBLOB blob;
        memset(&blob, 0, sizeof blob);
        blob.BitLen = 256; /* right-aligned: the first 32 bytes of each coordinate stay zero */
        if (!bn_param(con->key, OSSL_PKEY_PARAM_EC_PUB_X, blob.XCoordinate + 32, 32) ||
            !bn_param(con->key, OSSL_PKEY_PARAM_EC_PUB_Y, blob.YCoordinate + 32, 32))
            FAIL(SAR_FAIL);
        rv = put_bytes((BYTE *)&blob, sizeof blob, pbBlob, pulBlobLen);
    } else {
        RSAPUBLICKEYBLOB blob;
        memset(&blob, 0, sizeof blob);
        int bits = EVP_PKEY_get_bits(con->key);
        blob.AlgID = SGD_RSA;
        blob.BitLen = (ULONG)bits;
        int nbytes = (bits + 7) / 8;
        if (!bn_param(con->key, OSSL_PKEY_PARAM_RSA_N, blob.Modulus + 256 - nbytes, nbytes) ||
            !bn_param(con->key, OSSL_PKEY_PARAM_RSA_E, blob.PublicExponent, 4))
            FAIL(SAR_FAIL);
        rv = put_bytes((BYTE *)&blob, sizeof blob, pbBlob, pulBlobLen);
    }
    LEAVE();
}

/* ---------------------------------------------------------------- signing */

ULONG DEVAPI SKF_ECCSignData(HCONTAINER hContainer, BYTE *pbDigest, ULONG ulDigestLen,
                             ECCSIGNATUREBLOB *pSignature) {
    ENTER();
    CHECK(lookup(hContainer, H_CON, &hp));
    Container *con = CON_OF(hp);
    if (!pbDigest || !pSignature) FAIL(SAR_INVALIDPARAMERR);
    if (con->type != CONTAINER_ECC) FAIL(SAR_KEYINFOTYPEERR);
    if (ulDigestLen != 32) FAIL(SAR_INDATALENERR);
    if (!APP_OF(hp)->logged_in) FAIL(SAR_USER_NOT_LOGGED_IN);
    /* OpenSSL 3's SM2 EVP_PKEY_sign takes its input as the digest e itself (no Z, no SM3). */
    unsigned char der[80];
    size_t der_len = sizeof der;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(con->key, NULL);
    int ok = ctx && EVP_PKEY_sign_init(ctx) == 1 &&
             EVP_PKEY_sign(ctx, der, &der_len, pbDigest, 32) == 1;
    EVP_PKEY_CTX_free(ctx);
    ECDSA_SIG *sig = NULL;
    if (ok) {
        const unsigned char *p = der;
        sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    }
    if (!sig) {
        ERR_clear_error();
        FAIL(SAR_FAIL);
    }
    memset(pSignature, 0, sizeof *pSignature);
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(sig, &r, &s);
    ok = BN_bn2binpad(r, pSignature->r + 32, 32) == 32 && BN_bn2binpad(s, pSignature->s + 32, 32) == 32;
    ECDSA_SIG_free(sig);
    if (!ok) FAIL(SAR_FAIL);
    LEAVE();
}

/* pbData is what gets PKCS#1 v1.5 type 1 padding: callers pass the DER DigestInfo. */
ULONG DEVAPI SKF_RSASignData(HCONTAINER hContainer, BYTE *pbData, ULONG ulDataLen,
                             BYTE *pbSignature, ULONG *pulSignLen) {
    ENTER();
    CHECK(lookup(hContainer, H_CON, &hp));
    Container *con = CON_OF(hp);
    if (!pbData || !pulSignLen) FAIL(SAR_INVALIDPARAMERR);
    if (con->type != CONTAINER_RSA) FAIL(SAR_KEYINFOTYPEERR);
    size_t k = (size_t)EVP_PKEY_get_size(con->key);
    if (ulDataLen == 0 || ulDataLen > k - 11) FAIL(SAR_INDATALENERR);
    if (!pbSignature) {
        *pulSignLen = (ULONG)k;
        goto out;
    }
    if (*pulSignLen < k) {
        *pulSignLen = (ULONG)k;
        FAIL(SAR_BUFFER_TOO_SMALL);
    }
    if (!APP_OF(hp)->logged_in) FAIL(SAR_USER_NOT_LOGGED_IN);
    size_t out_len = k;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(con->key, NULL);
    int ok = ctx && EVP_PKEY_sign_init(ctx) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
             EVP_PKEY_sign(ctx, pbSignature, &out_len, pbData, ulDataLen) == 1;
    EVP_PKEY_CTX_free(ctx);
    if (!ok) {
        ERR_clear_error();
        FAIL(SAR_FAIL);
    }
    *pulSignLen = (ULONG)out_len;
    LEAVE();
}
