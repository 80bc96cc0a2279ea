// The SDK's worker entry is type-checked with the SDK (libs/e2ee-js); here it is a side effect.
declare module "@ecrin/e2ee/worker";
