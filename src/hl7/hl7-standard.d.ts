/**
 * The part of hl7-standard 1.0.4 (no published types) that hl7-standard-serializer.ts uses.
 * Only the build path is declared on purpose: its parser is never used.
 */
declare module 'hl7-standard' {
  /** A field value as hl7-standard models it (the option names for `~` and `&` are swapped). */
  export type Hl7StandardComponent = string | string[];
  export type Hl7StandardRepetition = string | Record<string, Hl7StandardComponent>;
  export type Hl7StandardField = Hl7StandardRepetition | Hl7StandardRepetition[];

  export interface Hl7StandardSegment {
    readonly type: string;
    data: Record<string, Hl7StandardField>;
    set(field: string, value: Hl7StandardField | Record<string, Hl7StandardField>): unknown;
  }

  class HL7 {
    constructor(data?: string, opts?: { lineEndings?: string; subComponents?: string; repeatingFields?: string });
    createSegment(name: string): Hl7StandardSegment;
    build(): string;
  }
  export default HL7;
}
