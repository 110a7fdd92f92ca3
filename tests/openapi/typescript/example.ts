// The seed's enroll-on-purchase flow with a client typed by openapi-typescript (docs/clients.md).
// Compiled with `tsc --strict` by tests/openapi/test_typescript_client.py against types generated from the
// served document; `@ts-expect-error` lines prove that the types refuse what the API does not promise.
import createClient from "openapi-fetch";
import type { components, paths } from "./learn-api";

type Schemas = components["schemas"];
type ApiError = Schemas["Error"];

export class LearnApiError extends Error {
  constructor(readonly status: number, readonly body: ApiError, readonly retryAfter: number | null) {
    super(`${body.error.code}: ${body.error.message} (${body.error.request_id})`);
  }
}

function retryable(code: Schemas["ErrorCode"]): boolean {
  switch (code) {
    case "rate_limited":
    case "service_unavailable":
    case "not_yet_consistent":
    case "idempotency_key_in_flight":
      return true;
    default:
      return false;
  }
}

function fail(response: Response, body: ApiError): never {
  const retryAfter = response.headers.get("Retry-After");
  throw new LearnApiError(response.status, body, retryAfter === null ? null : Number(retryAfter));
}

export async function enrollOnPurchase(baseUrl: string, apiKey: string, userId: number): Promise<Schemas["Enrollment"]> {
  const api = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${apiKey}` } });

  // 1. Create a course
  const created = await api.POST("/api/v1/learn/courses", {
    body: { slug: "intro-to-mobieus", title: "Intro to Mobieus", completion_rule: "all_required",
            credit_hours: 2.5, credit_kind: "CEU" },
  });
  if (created.error) fail(created.response, created.error);
  const course: Schemas["Course"] = created.data.data;
  const hours: number | null = course.credit.hours;
  // @ts-expect-error credit hours may be null
  const mustBeNumber: number = course.credit.hours;
  void hours; void mustBeNumber;

  // ... its activities are added in the admin API; then publish it
  const published = await api.POST("/api/v1/learn/courses/{id}/publish", { params: { path: { id: course.id } } });
  if (published.error) fail(published.response, published.error);
  const status: "draft" | "published" | "archived" = published.data.data.status;
  void status;

  // 2. After a Stripe checkout completes, enroll the buyer; the webhook's retries reuse its Idempotency-Key
  const enrolled = await api.POST("/api/v1/learn/enrollments", {
    params: { header: { "Idempotency-Key": `checkout-${course.id}-${userId}` } },
    body: { user_id: userId, course_id: course.id, source: "stripe_purchase" },
  });
  if (enrolled.error) {
    if (retryable(enrolled.error.error.code)) {
      // back off for Retry-After seconds, then retry with the same Idempotency-Key
    }
    fail(enrolled.response, enrolled.error);
  }
  const enrollment: Schemas["Enrollment"] = enrolled.data.data;
  const replayed: string | null = enrolled.response.headers.get("Idempotent-Replayed");
  void replayed;

  // Quick start: list courses, newest first, following next_cursor
  let cursor: string | undefined;
  do {
    const page = await api.GET("/api/v1/learn/courses", { params: { query: { limit: 50, ...(cursor ? { cursor } : {}) } } });
    if (page.error) fail(page.response, page.error);
    for (const c of page.data.data) console.log(c.id, c.slug, c.version.number, c.owner.name ?? "(unknown owner)");
    cursor = page.data.next_cursor ?? undefined;
  } while (cursor);

  // SCORM packages: scorm_version is null while a package is processing and after it failed
  const packages = await api.GET("/api/v1/learn/scorm-packages");
  if (packages.error) fail(packages.response, packages.error);
  for (const p of packages.data.data) {
    const version: Schemas["ScormVersion"] | null = p.scorm_version;
    // @ts-expect-error scorm_version may be null
    const always: Schemas["ScormVersion"] = p.scorm_version;
    console.log(p.title, p.status, version ?? "-", p.error ?? "", always);
  }

  // The learner's certificate and its PDF
  const certificates = await api.GET("/api/v1/learn/certificates", {
    params: { query: { user_id: userId, course_id: course.id } },
  });
  if (certificates.error) fail(certificates.response, certificates.error);
  const first = certificates.data.data[0];
  if (first !== undefined) {
    const templateVersion: number = first.pdf.template_version;
    const pdf = await api.GET("/api/v1/learn/certificates/{id}/pdf", {
      params: { path: { id: first.id } }, parseAs: "blob",
    });
    if (pdf.error) fail(pdf.response, pdf.error);
    const blob: Blob = pdf.data;
    console.log(first.verification_url, templateVersion, blob.size);
  }
  return enrollment;
}
