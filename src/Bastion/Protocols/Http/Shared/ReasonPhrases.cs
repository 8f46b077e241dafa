using System.Net;

namespace Bastion.Protocols.Http;

/// <summary>The one reason-phrase table for status lines and error pages.</summary>
public static class ReasonPhrases
{
    public static string Get(int status) => status switch
    {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => Enum.IsDefined((HttpStatusCode)status) ? Spaced(((HttpStatusCode)status).ToString()) : "Unknown",
    };

    /// <summary>`NonAuthoritativeInformation` → `Non Authoritative Information`.</summary>
    static string Spaced(string name)
    {
        var sb = new System.Text.StringBuilder(name.Length + 8);
        foreach (var c in name)
        {
            if (char.IsUpper(c) && sb.Length > 0) sb.Append(' ');
            sb.Append(c);
        }
        return sb.ToString();
    }
}
