// Types for the part of the vendored ts-mls bundle (web/vendor/ts-mls.js, built by
// scripts/vendor-web.sh) that the client uses. MLS values the client only passes back to
// the library are opaque here.

export type CiphersuiteImpl = {
  readonly __ciphersuite: unique symbol;
  signature: { keygen(): Promise<{ signKey: Uint8Array; publicKey: Uint8Array }> };
};
export type CiphersuiteName = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
export type KeyPackage = object;
export type PrivateKeyPackage = object;
export type Welcome = object;
export type PskIndex = object;
export type Proposal =
  | { proposalType: "add"; add: { keyPackage: KeyPackage } }
  | { proposalType: "remove"; remove: { removed: number } };
export interface ClientState {
  groupContext: { epoch: bigint; groupId: Uint8Array };
  keySchedule: { exporterSecret: Uint8Array; epochAuthenticator: Uint8Array };
  privatePath: { leafIndex: number };
  ratchetTree: Array<
    | {
        nodeType: "leaf";
        leaf: { signaturePublicKey: Uint8Array; credential: { credentialType: string; identity?: Uint8Array } };
      }
    | { nodeType: "parent" }
    | undefined
  >;
}
export type MLSMessage =
  | { wireformat: "mls_key_package"; keyPackage: KeyPackage; version: "mls10" }
  | { wireformat: "mls_welcome"; welcome: Welcome; version: "mls10" }
  | { wireformat: "mls_public_message"; publicMessage: object; version: "mls10" }
  | { wireformat: "mls_private_message"; privateMessage: object; version: "mls10" };

export function getCiphersuiteFromName(name: CiphersuiteName): object;
export function getCiphersuiteImpl(suite: object): Promise<CiphersuiteImpl>;
export function defaultCapabilities(): object;
export const defaultLifetime: object;
export const emptyPskIndex: PskIndex;
export function acceptAll(): "accept";
export function generateKeyPackage(
  credential: { credentialType: "basic"; identity: Uint8Array },
  capabilities: object,
  lifetime: object,
  extensions: object[],
  cs: CiphersuiteImpl,
): Promise<{ publicPackage: KeyPackage; privatePackage: PrivateKeyPackage }>;
export function generateKeyPackageWithKey(
  credential: { credentialType: "basic"; identity: Uint8Array },
  capabilities: object,
  lifetime: object,
  extensions: object[],
  signatureKeyPair: { signKey: Uint8Array; publicKey: Uint8Array },
  cs: CiphersuiteImpl,
): Promise<{ publicPackage: KeyPackage; privatePackage: PrivateKeyPackage }>;
export function createGroup(
  groupId: Uint8Array,
  keyPackage: KeyPackage,
  privateKeyPackage: PrivateKeyPackage,
  extensions: object[],
  cs: CiphersuiteImpl,
): Promise<ClientState>;
export function createCommit(
  context: { state: ClientState; cipherSuite: CiphersuiteImpl },
  options?: { extraProposals?: Proposal[]; ratchetTreeExtension?: boolean; wireAsPublicMessage?: boolean },
): Promise<{ newState: ClientState; welcome: Welcome | undefined; commit: MLSMessage; consumed: Uint8Array[] }>;
export function joinGroup(
  welcome: Welcome,
  keyPackage: KeyPackage,
  privateKeys: PrivateKeyPackage,
  pskSearch: PskIndex,
  cs: CiphersuiteImpl,
): Promise<ClientState>;
export function processMessage(
  message: MLSMessage,
  state: ClientState,
  pskIndex: PskIndex,
  action: typeof acceptAll,
  cs: CiphersuiteImpl,
): Promise<{ kind: "newState" | "applicationMessage"; newState: ClientState }>;
export function mlsExporter(
  exporterSecret: Uint8Array,
  label: string,
  context: Uint8Array,
  length: number,
  cs: CiphersuiteImpl,
): Promise<Uint8Array>;
export function encodeMlsMessage(message: MLSMessage): Uint8Array;
export function decodeMlsMessage(bytes: Uint8Array, offset: number): [MLSMessage, number] | undefined;
