using System.Buffers;
using System.Buffers.Text;
using System.IO.Pipelines;
using System.Net;
using System.Text;

namespace Bastion.Protocols.HttpProxy;

/// <summary>Writes HTTP/1.1 response heads, bodies and chunked framing straight into the client's pipe.</summary>
static class ResponseHeadWriter
{
    public static void StatusLine(PipeWriter w, int status, string? reason)
    {
        Ascii(w, "HTTP/1.1 ");
        Number(w, status);
        Ascii(w, " ");
        Ascii(w, string.IsNullOrEmpty(reason) ? Http.ReasonPhrases.Get(status) : reason);
        Ascii(w, "\r\n");
    }

    public static void Header(PipeWriter w, string name, string value)
    {
        Ascii(w, name);
        Ascii(w, ": ");
        Latin1(w, value);
        Ascii(w, "\r\n");
    }

    public static void Header(PipeWriter w, string name, long value)
    {
        Ascii(w, name);
        Ascii(w, ": ");
        Number(w, value);
        Ascii(w, "\r\n");
    }

    public static void EndHead(PipeWriter w) => Ascii(w, "\r\n");

    public static void ChunkHeader(PipeWriter w, int size)
    {
        var span = w.GetSpan(12);
        Utf8Formatter.TryFormat(size, span, out int n, new System.Buffers.StandardFormat('x'));
        span[n] = (byte)'\r';
        span[n + 1] = (byte)'\n';
        w.Advance(n + 2);
    }

    public static void CrLf(PipeWriter w) => Ascii(w, "\r\n");

    public static void LastChunk(PipeWriter w) => Ascii(w, "0\r\n\r\n");

    public static void Ascii(PipeWriter w, string s)
    {
        var span = w.GetSpan(s.Length);
        int n = Encoding.ASCII.GetBytes(s, span);
        w.Advance(n);
    }

    public static void Latin1(PipeWriter w, string s)
    {
        var span = w.GetSpan(s.Length);
        int n = Encoding.Latin1.GetBytes(s, span);
        w.Advance(n);
    }

    static void Number(PipeWriter w, long v)
    {
        var span = w.GetSpan(20);
        Utf8Formatter.TryFormat(v, span, out int n);
        w.Advance(n);
    }
}
