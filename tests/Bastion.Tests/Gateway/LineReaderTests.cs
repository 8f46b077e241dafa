using System.IO.Pipelines;
using System.Text;
using Bastion.Gateway;

namespace Bastion.Tests.Gateway;

public class LineReaderTests
{
    static async Task<List<(LineStatus Status, string Line, LineFlags Flags, int Wire)>> ReadAll(string input, int max, int chunk)
    {
        var pipe = new Pipe();
        var data = Encoding.Latin1.GetBytes(input);
        var writer = Task.Run(async () =>
        {
            for (int i = 0; i < data.Length; i += chunk)
                await pipe.Writer.WriteAsync(data.AsMemory(i, Math.Min(chunk, data.Length - i)));
            await pipe.Writer.CompleteAsync();
        });
        var reader = new LineReader(pipe.Reader, max);
        var list = new List<(LineStatus, string, LineFlags, int)>();
        while (true)
        {
            var r = await reader.ReadAsync(CancellationToken.None);
            list.Add((r.Status, Encoding.Latin1.GetString(r.Line.Span), r.Flags, r.WireLength));
            if (r.Status == LineStatus.End) break;
        }
        await writer;
        Assert.Equal(data.Length, reader.TotalConsumed);
        Assert.Equal(data.Length, list.Sum(x => x.Item4));
        return list;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(1000)]
    public async Task Reads_lines_in_any_chunking_and_counts_every_byte(int chunk)
    {
        var got = await ReadAll("USER bob\r\nPASS x\nNOOP\r\npartial", 64, chunk);
        Assert.Equal(
            [(LineStatus.Line, "USER bob", LineFlags.None, 10), (LineStatus.Line, "PASS x", LineFlags.BareLf, 7),
             (LineStatus.Line, "NOOP", LineFlags.None, 6), (LineStatus.End, "", LineFlags.None, 7)],
            got);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(1000)]
    public async Task A_line_over_the_bound_is_reported_once_and_the_next_line_reads_clean(int chunk)
    {
        var longLine = new string('x', 100);
        var got = await ReadAll($"HELO a\r\n{longLine}\r\nQUIT\r\n", 16, chunk);
        Assert.Equal(["Line:HELO a", "TooLong:", "Line:QUIT", "End:"], got.Select(g => $"{g.Status}:{g.Line}"));
        // The over-long line's bytes are counted, whether discarded at once or on the next read.
        Assert.Equal(8 + 102 + 6, got.Sum(g => g.Wire));
    }

    [Fact]
    public async Task HasBuffered_sees_pipelined_bytes_without_consuming_them()
    {
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync("STARTTLS\r\nMAIL FROM:<x@y>\r\n"u8.ToArray());
        var reader = new LineReader(pipe.Reader, 512);
        var first = await reader.ReadAsync(CancellationToken.None);
        Assert.Equal("STARTTLS", Encoding.ASCII.GetString(first.Line.Span));
        Assert.True(reader.HasBuffered);
        Assert.True(reader.HasBuffered);
        var second = await reader.ReadAsync(CancellationToken.None);
        Assert.Equal("MAIL FROM:<x@y>", Encoding.ASCII.GetString(second.Line.Span));
        Assert.False(reader.HasBuffered);
    }
}
