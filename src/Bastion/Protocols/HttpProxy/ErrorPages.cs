using System.Net;

namespace Bastion.Protocols.HttpProxy;

/// <summary>The small pages the gateway answers with itself: they name the status, the reason and the request id.</summary>
static class ErrorPages
{
    const string Style = "body{font:15px system-ui,sans-serif;margin:3em auto;max-width:40em;color:#222}h1{font-size:1.4em}code{background:#f3f3f3;padding:0 .3em}";

    public static string Html(int status, string reason, string requestId, string? rule)
    {
        var title = $"{status} {ResponseHeadWriter.ReasonPhrase(status)}";
        var ruleText = rule is null ? "" : $"<p>Rule: <code>{WebUtility.HtmlEncode(rule)}</code></p>";
        return $"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>{Style}</style></head>\n"
            + $"<body><h1>{title}</h1>\n<p>{WebUtility.HtmlEncode(reason)}</p>{ruleText}\n"
            + $"<p>Request id: <code>{WebUtility.HtmlEncode(requestId)}</code></p>\n<hr><p><small>bastion</small></p></body></html>\n";
    }
}
