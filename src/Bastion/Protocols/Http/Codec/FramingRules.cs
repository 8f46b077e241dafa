namespace Bastion.Protocols.Http.Codec;

/// <summary>
/// Message body length (RFC 9112 §6), the same rules for requests and responses, strict: anything two
/// implementations could read differently is an error, so that the gateway never forwards a message whose end a
/// server behind (or a client in front) might see elsewhere.
/// </summary>
public static class FramingRules
{
    /// <summary>
    /// Request framing: Transfer-Encoding must be exactly `chunked` once, as the only coding (a coding before
    /// it: 501, anything else: 400); never with Content-Length, never in HTTP/1.0. Content-Length values must all
    /// be the same decimal number.
    /// </summary>
    public static bool ForRequest(HttpHead h, out BodyFraming framing, out HttpError error)
    {
        framing = BodyFraming.Empty;
        int te = h.IndexOf(KnownHeader.TransferEncoding);
        int cl = h.IndexOf(KnownHeader.ContentLength);
        if (te >= 0)
        {
            if (h.MinorVersion == 0) { error = HttpError.Bad("Transfer-Encoding in an HTTP/1.0 request"); return false; }
            if (cl >= 0) { error = HttpError.Bad("both Content-Length and Transfer-Encoding"); return false; }
            if (!CheckChunked(h, te, 400, 501, out error)) return false;
            framing = BodyFraming.Chunked;
            return true;
        }
        if (cl >= 0)
        {
            if (!ContentLength(h, cl, 400, out long n, out error)) return false;
            framing = n == 0 ? BodyFraming.Empty : new BodyFraming(BodyKind.Length, n);
            return true;
        }
        error = default;
        return true;
    }

    /// <summary>
    /// Response framing (RFC 9112 §6.3 steps 1–7) for a request of method HEAD or CONNECT or another. Errors are
    /// 502: the gateway refuses the response and closes the upstream connection.
    /// </summary>
    public static bool ForResponse(HttpHead h, int status, bool headRequest, bool connectRequest, out BodyFraming framing, out HttpError error)
    {
        framing = BodyFraming.Empty;
        int te = h.IndexOf(KnownHeader.TransferEncoding);
        int cl = h.IndexOf(KnownHeader.ContentLength);
        if (te >= 0 && cl >= 0) { error = HttpError.BadResponse("response with both Content-Length and Transfer-Encoding"); return false; }
        if (te >= 0 && h.MinorVersion == 0) { error = HttpError.BadResponse("Transfer-Encoding in an HTTP/1.0 response"); return false; }
        long length = -1;
        if (cl >= 0 && !ContentLength(h, cl, 502, out length, out error)) return false;
        if (te >= 0 && !CheckChunked(h, te, 502, 502, out error)) return false;
        error = default;
        // 1xx and 204 never have a body, and may not claim one (RFC 9110 §8.6, RFC 9112 §6.1).
        if (status < 200 || status == 204)
        {
            if (te >= 0 || length > 0) { error = HttpError.BadResponse($"a body announced on a {status} response"); return false; }
            return true;
        }
        // HEAD and 304: Content-Length and Transfer-Encoding describe what a GET would get; no body follows.
        if (headRequest || status == 304) return true;
        if (connectRequest && status < 300) return true;
        if (te >= 0) framing = BodyFraming.Chunked;
        else if (length >= 0) framing = length == 0 ? BodyFraming.Empty : new BodyFraming(BodyKind.Length, length);
        else framing = BodyFraming.UntilClose;
        return true;
    }

    /// <summary>Every Transfer-Encoding line together must list exactly one coding, `chunked`.</summary>
    static bool CheckChunked(HttpHead h, int first, int status, int unsupportedStatus, out HttpError error)
    {
        error = default;
        int codings = 0, chunkedAt = -1;
        for (int i = first; i >= 0; i = h.IndexOf(KnownHeader.TransferEncoding, i + 1))
        {
            var list = new HttpChars.ListReader(h.Value(i));
            while (list.Next(out var coding))
            {
                if (coding.IndexOfAnyExcept(HttpChars.Token) >= 0)
                {
                    error = new(status, "malformed Transfer-Encoding");
                    return false;
                }
                if (HttpChars.EqualsLower(coding, "chunked"u8))
                {
                    if (chunkedAt >= 0)
                    {
                        error = new(status, "chunked listed twice in Transfer-Encoding");
                        return false;
                    }
                    chunkedAt = codings;
                }
                codings++;
            }
            if (list.Empty)
            {
                error = new(status, "empty element in Transfer-Encoding");
                return false;
            }
        }
        if (chunkedAt < 0 || chunkedAt != codings - 1)
        {
            error = new(status, "Transfer-Encoding without chunked as the final coding");
            return false;
        }
        if (codings > 1)
        {
            error = new(unsupportedStatus, "unsupported transfer coding before chunked");
            return false;
        }
        return true;
    }

    /// <summary>All Content-Length values (lines and list elements) must be the same 1*DIGIT number.</summary>
    static bool ContentLength(HttpHead h, int first, int status, out long length, out HttpError error)
    {
        length = -1;
        error = default;
        for (int i = first; i >= 0; i = h.IndexOf(KnownHeader.ContentLength, i + 1))
        {
            var list = new HttpChars.ListReader(h.Value(i));
            while (list.Next(out var e))
            {
                long v = HttpChars.ParseDecimal(e);
                if (v < 0)
                {
                    error = new(status, "invalid Content-Length");
                    return false;
                }
                if (length >= 0 && v != length)
                {
                    error = new(status, "conflicting Content-Length values");
                    return false;
                }
                length = v;
            }
            if (list.Empty)
            {
                error = new(status, "invalid Content-Length");
                return false;
            }
        }
        return true;
    }

    /// <summary>
    /// Connection (RFC 9110 §7.6.1, RFC 9112 §9.3): `close`, keep-alive by version, `upgrade`, and every other
    /// name it lists marks that field hop-by-hop. Tokens must be tokens.
    /// </summary>
    public static bool Connection(HttpHead h, int status, out HttpError error)
    {
        error = default;
        bool close = false, keepAlive = false, upgrade = false;
        for (int i = h.IndexOf(KnownHeader.Connection); i >= 0; i = h.IndexOf(KnownHeader.Connection, i + 1))
        {
            var list = new HttpChars.ListReader(h.Value(i));
            while (list.Next(out var t))
            {
                if (t.IndexOfAnyExcept(HttpChars.Token) >= 0)
                {
                    error = new(status, "malformed Connection header");
                    return false;
                }
                if (HttpChars.EqualsLower(t, "close"u8)) close = true;
                else if (HttpChars.EqualsLower(t, "keep-alive"u8)) keepAlive = true;
                else if (HttpChars.EqualsLower(t, "upgrade"u8)) upgrade = true;
                else
                {
                    for (int j = 0; j < h.FieldCount; j++)
                        if (h[j].Id == KnownHeader.Other && HttpChars.EqualsIgnoreCaseBytes(h.Name(j), t)) h.MarkListed(j);
                }
            }
            // An empty Connection value or empty elements carry nothing; they are not a framing question.
        }
        h.Close = close || (h.MinorVersion == 0 && !keepAlive);
        h.Upgrade = upgrade && h.IndexOf(KnownHeader.Upgrade) >= 0;
        return true;
    }
}
