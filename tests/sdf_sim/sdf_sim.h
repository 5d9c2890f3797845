/* The GM/T 0018-2012 subset the simulator implements (layout as in GmSSL sdf.h). */
#ifndef SDF_SIM_H
#define SDF_SIM_H

#ifndef ECCREF_MAX_LEN
#define ECCREF_MAX_LEN 64 /* the 2012 spec; some vendors ship 32 */
#endif

#define SGD_SM3 0x00000001
#define SGD_SM2_1 0x00020200

#define SDR_OK 0x0
#define SDR_BASE 0x01000000
#define SDR_UNKNOWERR (SDR_BASE + 0x01)
#define SDR_NOTSUPPORT (SDR_BASE + 0x02)
#define SDR_COMMFAIL (SDR_BASE + 0x03)
#define SDR_HARDFAIL (SDR_BASE + 0x04)
#define SDR_OPENDEVICE (SDR_BASE + 0x05)
#define SDR_OPENSESSION (SDR_BASE + 0x06)
#define SDR_PARDENY (SDR_BASE + 0x07)
#define SDR_KEYNOTEXIST (SDR_BASE + 0x08)
#define SDR_SIGNERR (SDR_BASE + 0x0D)
#define SDR_FILENOEXIST (SDR_BASE + 0x12)
#define SDR_KEYERR (SDR_BASE + 0x15)
#define SDR_RANDERR (SDR_BASE + 0x17)
#define SDR_PRKRERR (SDR_BASE + 0x18) /* the simulator's "key index locked" */
#define SDR_NOBUFFER (SDR_BASE + 0x1C)
#define SDR_INARGERR (SDR_BASE + 0x1D)
#define SDR_OUTARGERR (SDR_BASE + 0x1E)

typedef struct {
    unsigned char IssuerName[40];
    unsigned char DeviceName[16];
    unsigned char DeviceSerial[16];
    unsigned int DeviceVersion;
    unsigned int StandardVersion;
    unsigned int AsymAlgAbility[2];
    unsigned int SymAlgAbility;
    unsigned int HashAlgAbility;
    unsigned int BufferSize;
} DEVICEINFO;

typedef struct {
    unsigned int bits;
    unsigned char x[ECCREF_MAX_LEN];
    unsigned char y[ECCREF_MAX_LEN];
} ECCrefPublicKey;

typedef struct {
    unsigned char r[ECCREF_MAX_LEN];
    unsigned char s[ECCREF_MAX_LEN];
} ECCSignature;

int SDF_OpenDevice(void **phDeviceHandle);
int SDF_CloseDevice(void *hDeviceHandle);
int SDF_OpenSession(void *hDeviceHandle, void **phSessionHandle);
int SDF_CloseSession(void *hSessionHandle);
int SDF_GetDeviceInfo(void *hSessionHandle, DEVICEINFO *pstDeviceInfo);
int SDF_GenerateRandom(void *hSessionHandle, unsigned int uiLength, unsigned char *pucRandom);
int SDF_GetPrivateKeyAccessRight(void *hSessionHandle, unsigned int uiKeyIndex,
                                 unsigned char *pucPassword, unsigned int uiPwdLength);
int SDF_ReleasePrivateKeyAccessRight(void *hSessionHandle, unsigned int uiKeyIndex);
int SDF_ExportSignPublicKey_ECC(void *hSessionHandle, unsigned int uiKeyIndex,
                                ECCrefPublicKey *pucPublicKey);
int SDF_InternalSign_ECC(void *hSessionHandle, unsigned int uiISKIndex, unsigned char *pucData,
                         unsigned int uiDataLength, ECCSignature *pucSignature);

/* Simulator only. */
int SIM_Provision(const char *dir, unsigned int max_failures);
void SIM_BreakDevice(int code);
void SIM_RepairDevice(void);
unsigned long SIM_AccessRightAttempts(unsigned int index);

#endif
