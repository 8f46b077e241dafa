namespace Bastion.Protocols.Http.Codec;

/// <summary>The header fields the codec and the gateways act on; every other name is <see cref="Other"/>.</summary>
public enum KnownHeader : byte
{
    Other,
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    ProxyConnection,
    TE,
    Trailer,
    Upgrade,
    ProxyAuthorization,
    ProxyAuthenticate,
    Authorization,
    Expect,
    Via,
    MaxForwards,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    ContentType,
    Cookie,
    /// <summary>RFC 7239; replaced like X-Forwarded-* unless from a trusted front.</summary>
    Forwarded,
    XRealIp,
    /// <summary>The settings of an `Upgrade: h2c`, which is never forwarded.</summary>
    Http2Settings,
}

/// <summary>Classifies a header name's bytes once, at parse time, so later decisions compare a byte, not a string.</summary>
public static class KnownHeaders
{
    public static KnownHeader Classify(ReadOnlySpan<byte> name) => name.Length switch
    {
        2 => Is(name, "te"u8) ? KnownHeader.TE : KnownHeader.Other,
        3 => Is(name, "via"u8) ? KnownHeader.Via : KnownHeader.Other,
        4 => Is(name, "host"u8) ? KnownHeader.Host : KnownHeader.Other,
        6 => Is(name, "expect"u8) ? KnownHeader.Expect : Is(name, "cookie"u8) ? KnownHeader.Cookie : KnownHeader.Other,
        7 => Is(name, "upgrade"u8) ? KnownHeader.Upgrade : Is(name, "trailer"u8) ? KnownHeader.Trailer : KnownHeader.Other,
        9 => Is(name, "forwarded"u8) ? KnownHeader.Forwarded : Is(name, "x-real-ip"u8) ? KnownHeader.XRealIp : KnownHeader.Other,
        10 => Is(name, "connection"u8) ? KnownHeader.Connection : Is(name, "keep-alive"u8) ? KnownHeader.KeepAlive : KnownHeader.Other,
        12 => Is(name, "content-type"u8) ? KnownHeader.ContentType : Is(name, "max-forwards"u8) ? KnownHeader.MaxForwards : KnownHeader.Other,
        13 => Is(name, "authorization"u8) ? KnownHeader.Authorization : KnownHeader.Other,
        14 => Is(name, "content-length"u8) ? KnownHeader.ContentLength
            : Is(name, "http2-settings"u8) ? KnownHeader.Http2Settings : KnownHeader.Other,
        15 => Is(name, "x-forwarded-for"u8) ? KnownHeader.XForwardedFor : KnownHeader.Other,
        16 => Is(name, "proxy-connection"u8) ? KnownHeader.ProxyConnection
            : Is(name, "x-forwarded-host"u8) ? KnownHeader.XForwardedHost : KnownHeader.Other,
        17 => Is(name, "transfer-encoding"u8) ? KnownHeader.TransferEncoding
            : Is(name, "x-forwarded-proto"u8) ? KnownHeader.XForwardedProto : KnownHeader.Other,
        18 => Is(name, "proxy-authenticate"u8) ? KnownHeader.ProxyAuthenticate : KnownHeader.Other,
        19 => Is(name, "proxy-authorization"u8) ? KnownHeader.ProxyAuthorization : KnownHeader.Other,
        _ => KnownHeader.Other,
    };

    static bool Is(ReadOnlySpan<byte> name, ReadOnlySpan<byte> lower) => HttpChars.EqualsLower(name, lower);

    /// <summary>
    /// Hop-by-hop fields (RFC 9110 §7.6.1, plus the proxy credentials of SPEC 3): they describe one connection and
    /// never cross the gateway. Framing fields are re-made by the writer from the framing decision.
    /// </summary>
    public static bool IsHopByHop(KnownHeader h) => h is KnownHeader.Connection or KnownHeader.KeepAlive
        or KnownHeader.ProxyConnection or KnownHeader.TE or KnownHeader.Trailer or KnownHeader.Upgrade
        or KnownHeader.ProxyAuthorization or KnownHeader.ProxyAuthenticate
        or KnownHeader.TransferEncoding or KnownHeader.ContentLength;
}
